"""The persistent Track-1 index: FAISS vector stores (vectors.py), what goes in (sources.py) and
the index directory people build, search and update (store.py)."""
