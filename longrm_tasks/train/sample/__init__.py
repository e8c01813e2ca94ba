"""The synthetic training samples shipped with the package, and the generator that writes them."""
