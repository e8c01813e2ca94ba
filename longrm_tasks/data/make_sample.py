"""Regenerate the bundled synthetic sample (`python -m longrm_tasks.data.make_sample`)."""
from longrm_tasks.data.loading import SAMPLE_DIR
from longrm_tasks.data.synthetic import LENGTH_BUCKETS, generate_benchmark
from longrm_tasks.jsonl import write_jsonl

# Per config: 6 PairWise (one per length bucket) and 3 BestOfN (2, 3, 4 candidates) where the
# real config has BestOfN; contexts of ~300 words so a tiny model runs the sample in seconds.
SAMPLE_SCALE = 0.03
SAMPLE_WORDS = {b: 200 + 40 * i for i, b in enumerate(LENGTH_BUCKETS)}


def main() -> None:
    for config, records in generate_benchmark(SAMPLE_SCALE, seed=2510, context_words=SAMPLE_WORDS).items():
        write_jsonl(SAMPLE_DIR / f"{config}.jsonl", records)
        print(config, len(records))


if __name__ == "__main__":
    main()
