"""How a long input meets a model's context: every cut / keep / refuse rule."""
