"""The Python process-pool baselines fanout is compared with, in the same run.

  python3 bench/pool.py by-field FILE [--processes N]   multiprocessing.Pool.map over byte-range chunks
  python3 bench/pool.py by-field-files DIR [--processes N]  multiprocessing.Pool.map, one task per file
  python3 bench/pool.py lesson FILE                      ProcessPoolExecutor.map, time.sleep(1) per record

Prints one JSON line: {"seconds": s, "records": n, "result": ...}.
"""
import json
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import Pool


def owned_lines(path, start, end):
    """The lines whose first byte lies in [start, end): fanout's line-ownership rule."""
    with open(path, 'rb') as f:
        if start > 0:
            f.seek(start - 1)
            if f.read(1) != b'\n':
                f.readline()  # the line that began before start belongs to the previous chunk
        while f.tell() < end:
            line = f.readline()
            if not line:
                break
            yield line


def by_field_chunk(args):
    path, start, end = args
    stats = {}
    records = 0
    for line in owned_lines(path, start, end):
        if not line.strip():
            continue
        r = json.loads(line)
        records += 1
        s = stats.setdefault(r['field'], [0, 0, 0])
        s[0] += 1
        s[1] += 1 if r['nobel'] else 0
        s[2] += 2017 - r['born']
    return stats, records


def by_field(path, processes):
    size = os.path.getsize(path)
    chunks = processes * 4
    step = -(-size // chunks)
    return by_field_ranges([(path, i, min(size, i + step)) for i in range(0, size, step)], processes)


def by_field_files(directory, processes):
    names = sorted(os.listdir(directory))
    files = [os.path.join(directory, n) for n in names if os.path.isfile(os.path.join(directory, n))]
    return by_field_ranges([(f, 0, os.path.getsize(f)) for f in files], processes)


def by_field_ranges(ranges, processes):
    started = time.perf_counter()
    with Pool(processes) as pool:
        parts = pool.map(by_field_chunk, ranges)
    total = {}
    records = 0
    for stats, n in parts:
        records += n
        for field, (c, nb, a) in stats.items():
            t = total.setdefault(field, [0, 0, 0])
            t[0] += c
            t[1] += nb
            t[2] += a
    result = {f: {'count': c, 'nobels': nb, 'ageSum': a} for f, (c, nb, a) in sorted(total.items())}
    return time.perf_counter() - started, records, result


def transform(record):
    time.sleep(1)
    return {'name': record['name'], 'age': 2017 - record['born']}


def lesson(path):
    with open(path) as f:
        records = [json.loads(line) for line in f if line.strip()]
    started = time.perf_counter()
    with ProcessPoolExecutor() as pool:
        result = list(pool.map(transform, records))
    return time.perf_counter() - started, len(records), result


if __name__ == '__main__':
    mode, path = sys.argv[1], sys.argv[2]
    processes = int(sys.argv[sys.argv.index('--processes') + 1]) if '--processes' in sys.argv else os.cpu_count()
    if mode == 'by-field':
        seconds, records, result = by_field(path, processes)
    elif mode == 'by-field-files':
        seconds, records, result = by_field_files(path, processes)
    else:
        seconds, records, result = lesson(path)
    print(json.dumps({'seconds': seconds, 'records': records, 'result': result}))
