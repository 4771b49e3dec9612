"""Track 1: multimodal document retrieval (MMDocIR page retrieval and M2KR passage retrieval).

data/        the real formats (readers with named errors) and the generator with known answers
retrievers/  one file per retriever, one registry
metrics.py   fractional recall (MMDocIR), hit rate (M2KR), nDCG@5, both rule sets
submission.py  the challenge's CSV (`question_id,passage_id`, a JSON list of ids per row)
"""
