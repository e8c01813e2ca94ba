"""Long-RewardBench data: schema, loading (hub / folder / bundled sample), selection."""
from longrm_tasks.data.loading import Benchmark, load_benchmark, load_config_file
from longrm_tasks.data.schema import BON_SUBTYPES, CONFIGS, LENGTH_BUCKETS, TASKTYPES, Item, validate_record
from longrm_tasks.data.selection import select

__all__ = ["Benchmark", "Item", "CONFIGS", "TASKTYPES", "LENGTH_BUCKETS", "BON_SUBTYPES",
           "load_benchmark", "load_config_file", "validate_record", "select"]
