"""Reference models, their training code, datasets and the tokenizer, and the demo runs built on them."""
