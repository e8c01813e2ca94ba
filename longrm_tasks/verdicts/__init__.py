"""Judge outputs -> predicted ranks: the parsers, and prediction files read back into judged rows."""
