"""`longrm report`: runs -> paper-style tables, provenance marks, the paper's own rows, Markdown/JSON, a plot.

runs.py / lm_eval_runs.py read runs (score JSON, lm-eval output: JSON files only);
layout.py says what a cell and a note show; names.py makes short labels;
comparability.py decides what is comparable with what (and with the paper);
paper.py loads the paper's published tables; table.py renders; plot.py draws.
"""
