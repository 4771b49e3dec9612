"""The persistent Track-1 index: FAISS vector stores (vectors.py), what goes in (sources.py), a
trained run's towers when the index is built with one (towers.py) and the index directory people
build, search and update (store.py)."""
