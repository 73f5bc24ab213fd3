"""map with extract/merge (each chunk's timestamps merged back), starmap without."""
import itertools

from parafork import snakefish

calc_time = {}


def extract(child_globals):
    return {"calc_time": child_globals["calc_time"]}


def merge(parent_globals, extracted):
    parent_globals["calc_time"].update(extracted["calc_time"])


def square(i):
    calc_time[i] = snakefish.get_timestamp()
    return i ** 2


def product(i, j):
    return i * j


args = range(100)
results = snakefish.map(square, args, extract, merge, concurrency=4, chunksize=7)
assert results == [i ** 2 for i in args]
print("map:", results[:5], "...")
assert sorted(calc_time) == list(args)  # every chunk's globals came back
print("timestamps merged for", len(calc_time), "items")

pairs = [(i, i + 1) for i in range(50)]
results = snakefish.starmap(product, pairs)
assert results == list(itertools.starmap(product, pairs))
print("starmap:", results[:5], "...")
