"""Dialog: NLU, flow engine driven by configs/, slot filling, knowledge base answers."""
