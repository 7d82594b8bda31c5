"""Speech recognition: voice activity detection, endpointing, recognizers behind one interface."""
