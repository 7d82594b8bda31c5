"""Speech synthesis: text normalisation, synthesizers behind one interface, prompt cache."""
