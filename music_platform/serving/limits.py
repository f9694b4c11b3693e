"""How many recommendations the pipeline stores, and so the most one answer can hold.

One constant for both sides: the ``ml`` assets store ``MAX_K`` recommendations per user and
``MAX_K`` similar tracks per track, and the service accepts ``k`` up to ``MAX_K`` (a larger
``k`` is a 422 that names it). Each step costs memory and start-up time in every worker:
1,000,000 users x 20 are 20 M rows (docs/serving.md has the measured figures).
"""

MAX_K = 20
