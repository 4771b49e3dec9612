"""A generator of Track 1 data in the challenge's layout, with the answers the real data hides.

`generate(out, scale, seed)` plans an MMDocIR-like world (docs.py: documents in MMDocIR's ten
domains, pages of prose, tables, charts and figures, paraphrased questions) and an M2KR-like one
(entities.py: look-alike entities, passages, image queries of the challenge's three kinds), renders
pages, photos and screenshots in worker processes (pages.py, photos.py), and writes the files
(writer.py) into a temporary directory beside `out` that is renamed into place at the end.

Layout written (file names verified against public copies, see mmctr.retrieval.data.formats):

    out/MMDocIR/MMDocIR_gt_remove.jsonl            questions, "passage_id": [] (gold removed)
    out/MMDocIR/MMDocIR_doc_passages.parquet       doc_name, passage_id, image_path, image_binary, ocr_text, vlm_text
    out/M2KR/challenge_data/train-00000-of-00001.parquet      question_id, question, instruction, img_path, pos_item_ids ([])
    out/M2KR/challenge_passage/train-00000-of-00001.parquet   passage_id, passage_content, page_screenshot
    out/M2KR/query_images/<SOURCE>/<question_id>.jpg
    out/M2KR/Challenge/page_NNNNNN.jpg
    out/train/...                                  the same layout, other documents and entities, gold filled
    out/truth/gold.jsonl, out/truth/summary.json   test gold, kinds and answers; counts

Assumed where no public copy could be read: the form of `img_path` and `page_screenshot` values,
the person-query instruction, null (not "") `question` for image-only rows, and 20,000 passages at
the full scale.
"""

from __future__ import annotations

from mmctr.retrieval.data.synth.config import SCALE_CONFIGS, SCALES, Scale
from mmctr.retrieval.data.synth.generator import RETRIEVAL_DATA, generate

__all__ = ["RETRIEVAL_DATA", "SCALES", "SCALE_CONFIGS", "Scale", "generate"]
