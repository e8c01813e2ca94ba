"""Stage II alignment: config, data, loss and trainer (TRL config/trainer pair)."""
