"""Penguin-like synthetic CSVs of any size, for scale tests and benchmarks.

`fit_profile` learns a `Profile` from the bundled data (class priors, each
class's island and sex frequencies, each class's mean and covariance of the
four measurements, and the missing-value rates); `generate` samples rows from
it, class-conditionally and seeded; `write_spans` writes them as
`<out>/span-<N>/penguins.csv`, the layout the pipeline's ExampleGen reads.

    tfxt synth --rows 100000 --out /tmp/penguins-100k [--seed 0]


Called by `bench/scale.py` and `tests/test_synthetic.py`.
"""

import dataclasses
import glob
import os
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from models import features

# The measurements, with the decimals the bundled CSVs use.
_DECIMALS = {"bill_length_mm": 1, "bill_depth_mm": 1, "flipper_length_mm": 0, "body_mass_g": 0}
# The curated schema's domains (schema/schema.pbtxt); samples are clipped into them.
_BOUNDS = {"bill_length_mm": (25.0, 70.0), "bill_depth_mm": (10.0, 25.0),
           "flipper_length_mm": (150.0, 250.0), "body_mass_g": (2000.0, 7000.0)}
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEFAULT_SOURCE = os.path.join(REPO_ROOT, "data", "penguins")


@dataclasses.dataclass(frozen=True)
class ClassProfile:
    """What one species looks like in the source data."""

    prior: float
    islands: Dict[str, float]
    sexes: Dict[str, float]
    mean: Tuple[float, ...]  # in features.NUMERIC_FEATURE_KEYS order
    covariance: Tuple[Tuple[float, ...], ...]


@dataclasses.dataclass(frozen=True)
class Profile:
    """The statistics `generate` samples from."""

    classes: Dict[str, ClassProfile]
    # Fraction of rows whose measurements (and sex) are all missing.
    all_missing_rate: float
    # Fraction of the other rows whose sex alone is missing.
    sex_missing_rate: float


def read_source(data_root: str = DEFAULT_SOURCE):
    """All span CSVs under `data_root` as one pandas DataFrame."""
    import pandas as pd

    paths = sorted(glob.glob(os.path.join(data_root, "span-*", "*.csv")))
    if not paths:
        raise FileNotFoundError(f"No span-*/*.csv files under {data_root}.")
    return pd.concat([pd.read_csv(p) for p in paths], ignore_index=True)


def fit_profile(data_root: str = DEFAULT_SOURCE) -> Profile:
    """Learns the per-class statistics and missing rates of the CSVs under `data_root`."""
    frame = read_source(data_root)
    numeric = list(features.NUMERIC_FEATURE_KEYS)
    all_missing = frame[numeric].isna().all(axis=1)
    rest = frame[~all_missing]
    classes = {}
    for species, rows in frame.groupby(features.LABEL_KEY):
        measured = rows[numeric].dropna()
        classes[species] = ClassProfile(
            prior=len(rows) / len(frame),
            islands=_frequencies(rows["island"]),
            sexes=_frequencies(rows["sex"].dropna()),
            mean=tuple(measured.mean().tolist()),
            covariance=tuple(tuple(r) for r in np.cov(measured.to_numpy(), rowvar=False).tolist()),
        )
    return Profile(classes=classes, all_missing_rate=float(all_missing.mean()),
                   sex_missing_rate=float(rest["sex"].isna().mean()))


def generate(profile: Profile, rows: int, seed: int = 0, year: int = 2007):
    """`rows` synthetic rows (a pandas DataFrame with the source's columns), seeded."""
    import pandas as pd

    rng = np.random.default_rng(seed)
    names = sorted(profile.classes)
    species = rng.choice(names, size=rows, p=_normalized([profile.classes[n].prior for n in names]))
    frame = pd.DataFrame({features.LABEL_KEY: species})
    frame["island"] = ""
    frame["sex"] = ""
    measurements = np.zeros((rows, len(features.NUMERIC_FEATURE_KEYS)))
    for name in names:
        index = np.flatnonzero(species == name)
        cls = profile.classes[name]
        frame.loc[index, "island"] = _draw(rng, cls.islands, len(index))
        frame.loc[index, "sex"] = _draw(rng, cls.sexes, len(index))
        measurements[index] = rng.multivariate_normal(cls.mean, cls.covariance, size=len(index))
    for column, key in enumerate(features.NUMERIC_FEATURE_KEYS):
        low, high = _BOUNDS[key]
        frame[key] = np.round(np.clip(measurements[:, column], low, high), _DECIMALS[key])
    all_missing = rng.random(rows) < profile.all_missing_rate
    sex_missing = all_missing | (rng.random(rows) < profile.sex_missing_rate)
    frame.loc[all_missing, list(features.NUMERIC_FEATURE_KEYS)] = np.nan
    frame.loc[sex_missing, "sex"] = None
    frame["year"] = year
    columns = [features.LABEL_KEY, "island", *features.NUMERIC_FEATURE_KEYS, "sex", "year"]
    return frame[columns]


def write_spans(out_dir: str, rows: int, spans: Sequence[int] = (2007, 2008, 2009), seed: int = 0,
                source: str = DEFAULT_SOURCE, profile: Optional[Profile] = None) -> List[str]:
    """Writes `rows` rows split evenly over `spans` as `<out_dir>/span-<N>/penguins.csv`.

    Each span gets its own seed derived from `seed`, so the output does not
    depend on how many spans come before it. Returns the written paths.
    """
    if rows < 1 or not spans:
        raise ValueError("rows must be at least 1 and spans must not be empty.")
    from tqdm import tqdm

    profile = profile or fit_profile(source)
    paths = []
    # A progress bar on a terminal only (disable=None), so scripts and logs stay clean.
    with tqdm(total=rows, unit="row", unit_scale=True, desc="synthetic rows", disable=None,
              leave=False) as progress:
        for i, span in enumerate(spans):
            count = rows // len(spans) + (1 if i < rows % len(spans) else 0)
            frame = generate(profile, count, seed=seed * 1_000_003 + span, year=span)
            path = os.path.join(out_dir, f"span-{span}", "penguins.csv")
            os.makedirs(os.path.dirname(path), exist_ok=True)
            # Integers without ".0" and missing values as empty fields, like the source CSVs.
            frame.astype({k: "Int64" for k, d in _DECIMALS.items() if d == 0}).to_csv(
                path, index=False, na_rep="")
            paths.append(path)
            progress.update(count)
    return paths


def _frequencies(values) -> Dict[str, float]:
    counts = values.value_counts(normalize=True).sort_index()
    return {str(k): float(v) for k, v in counts.items()}


def _normalized(weights):
    weights = np.asarray(weights, dtype=float)
    return weights / weights.sum()


def _draw(rng, frequencies: Dict[str, float], size: int):
    names = list(frequencies)
    return rng.choice(names, size=size, p=_normalized([frequencies[n] for n in names]))
