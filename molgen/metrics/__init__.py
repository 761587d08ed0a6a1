"""MOSES-compatible set metrics of generated molecules (``score``) and their parts."""
from molgen.metrics.score import MOSES_KEYS, STRUCTURE_KEYS, Scored, format_table, score, score_set

__all__ = ["MOSES_KEYS", "STRUCTURE_KEYS", "format_table", "score", "score_set", "Scored"]
