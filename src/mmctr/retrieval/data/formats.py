"""File and column names of the real Track 1 data, stated once for the readers and the generator.

Verified against public sources (search tool, read in this session):
- MMDocIR-Challenge: `MMDocIR_gt_remove.jsonl` and `MMDocIR_doc_passages.parquet` side by side
  (solution code of i2vec/MMDocRetrievalChallenge and others); the page parquet columns
  `doc_name`, `passage_id`, `image_path`, `image_binary`, `ocr_text`, `vlm_text` (the MMDocIR
  dataset README lists the same columns, plus `domain`, for `MMDocIR_pages.parquet`); `image_path`
  is relative to the MMDocIR directory.
- MMDocIR evaluation release: `MMDocIR_annotations.jsonl`, one line per document with `doc_name`,
  `domain`, `page_indices`, `questions` = [{`Q`, `A`, `page_id` (0-based pages), `type` (a
  stringified list such as "['Chart', 'Table']"), `layout_mapping`}] (MMDocRAG/MMDocIR).
- M2KR-Challenge: `challenge_data/train-00000-of-00001.parquet` (queries) and
  `challenge_passage/train-00000-of-00001.parquet` (passages with `passage_id`,
  `passage_content`, `page_screenshot`); query images in `query_images/` (`img_path` relative to
  it) and screenshots in `Challenge/` (`page_screenshot` relative to it; some users unpack it
  as `passage_images/Challenge`); `question` is null or empty for image-only queries.
- PreFLMR M2KR: `<NAME>_data/{train,valid,test}-NNNNN-of-NNNNN.parquet` and
  `<NAME>_passages/{train,valid,test}_passages-NNNNN-of-NNNNN.parquet` (BByrneLab on the HF hub);
  the WIT / E-VQA instructions below are copied from FLMR's configs.
- ViDoRe BEIR layout: `corpus/`, `queries/`, `qrels/` parquet folders; `corpus-id` and `query-id`
  are int64 in some sets and strings in others.

Assumed (no public copy to read): the exact `img_path` / `page_screenshot` values and the KVQA
instruction of the challenge files, the challenge's passage count, and the ViDoRe QA shard names
(`data/test-*.parquet`, as the HF hub writes them).
"""

from __future__ import annotations

# ---- MMDocIR
MMDOCIR_QUESTIONS = "MMDocIR_gt_remove.jsonl"
MMDOCIR_PAGES = "MMDocIR_doc_passages.parquet"
MMDOCIR_EVAL_PAGES = "MMDocIR_pages.parquet"  # the evaluation release's name for the same table
MMDOCIR_ANNOTATIONS = "MMDocIR_annotations.jsonl"
MMDOCIR_DIR_NAMES = ("MMDocIR", "MMDocIR-Challenge")
PAGE_COLUMNS = ("doc_name", "passage_id", "image_path", "image_binary", "ocr_text", "vlm_text")
QUESTION_FIELDS = ("question_id", "question", "doc_name", "domain", "num_of_pages", "passage_id")

# ---- M2KR (challenge)
M2KR_DIR_NAMES = ("M2KR", "M2KR-Challenge")
M2KR_QUERIES = "challenge_data/train-00000-of-00001.parquet"
M2KR_PASSAGES = "challenge_passage/train-00000-of-00001.parquet"
M2KR_QUERY_IMAGES = "query_images"
M2KR_SCREENSHOTS = "Challenge"
# Where users have unpacked the two image archives, tried in this order.
M2KR_QUERY_IMAGE_DIRS = ("query_images", "images", ".")
M2KR_SCREENSHOT_DIRS = ("Challenge", "passage_images/Challenge", "passage_images", ".")
QUERY_COLUMNS = ("question_id", "question", "instruction", "img_path", "pos_item_ids")
PASSAGE_COLUMNS = ("passage_id", "passage_content", "page_screenshot")
# Rows of the real 6,415-row query file, by kind (image, image+question, WIT-like).
M2KR_REAL_ROWS = 6_415
M2KR_KIND_STARTS = (0, 1_400, 4_415)

WIT_INSTRUCTIONS = (
    "Identify the document that is connected to this image.:",
    "Provide information about the document linked to this image.:",
    "Please describe the document that corresponds to this image.:",
    "What is the document that this image is related to?:",
    "Describe the document that accompanies this image.:",
    "Please give information on the document that goes with this image.:",
)
QUESTION_INSTRUCTIONS = (
    "Using the provided image, obtain documents that address the subsequent question: ",
    "Retrieve documents that provide an answer to the question alongside the image: ",
    "Extract documents linked to the question provided in conjunction with the image: ",
    "Utilizing the given image, obtain documents that respond to the following question: ",
)
# Assumed: the challenge's person-image rows (KVQA-like) carry no question, only this kind of text.
PERSON_INSTRUCTIONS = (
    "Identify the person in this image and retrieve the document about them.:",
    "Find the document that describes the person shown in this image.:",
)

# ---- ViDoRe
VIDORE_QA_COLUMNS = ("query", "image", "image_filename")
VIDORE_BEIR_DIRS = ("corpus", "queries", "qrels")
