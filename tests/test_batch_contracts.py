"""batch_predict's contracts at its edges (issue 12): what a target accepts as a name, single-file
outputs, ordinary mistakes refused as InvalidInputError before anything is sent or written, client
options on Dask workers, and no secret in anything a job writes.

Everything runs against real local-target servers on 127.0.0.1, real files and a real Dask cluster.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pandas as pd
import pytest
from deployflow import (
    ConflictError,
    InvalidInputError,
    batch_predict,
    get_deploy_client,
    read_output,
)
from support.batch_data import PredictOnlyServingClient, expected_linear, frame, model
from support.fault_proxy import FaultProxy

FEATURES = ["a", "b"]


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    return tmp_path_factory.mktemp("batch-contracts-home")


@pytest.fixture(scope="module")
def client(home):
    client = get_deploy_client(f"local://{home}")
    for name in ("linear", "slow_linear", "picky", "uneven_records"):
        client.create_deployment(name, model(name))
    yield client
    for deployment in client.list_deployments():
        client.delete_deployment(deployment["name"])


@pytest.fixture
def counting(client):
    """A serving client whose every request goes through a proxy that counts them."""
    with FaultProxy(client.get_deployment("linear")["url"]) as proxy:
        with get_deploy_client(f"serving+{proxy.url}") as remote:
            yield remote, proxy


def everything_under(path) -> list[str]:
    return sorted(str(p.relative_to(path)) for p in path.rglob("*"))


# --------------------------------------------------------------------------------------------------
# 4. A target that serves one model needs no name
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["event loop", "thread pool"])
def test_a_server_of_one_model_is_scored_without_a_name(client, tmp_path, path):
    url = client.get_deployment("linear")["url"]
    remote = get_deploy_client(f"serving+{url}") if path == "event loop" else PredictOnlyServingClient(f"serving+{url}")
    df = frame(700, seed=1)
    assert len(remote.predict(inputs=df[FEATURES])["predictions"]) == 700  # predict needs no name here
    out = batch_predict(remote, df, chunk_size=100, feature_columns=FEATURES)
    np.testing.assert_allclose(out["prediction"].to_numpy(), expected_linear(df))
    summary = batch_predict(remote, df, output=tmp_path / "s.csv", chunk_size=100, feature_columns=FEATURES)
    assert summary.rows == 700
    assert read_output(tmp_path / "s.csv")["id"].tolist() == list(range(700))
    remote.close()


def test_a_target_that_needs_a_name_says_so_before_writing_anything(client, tmp_path):
    for names in ({}, {"deployment_name": "linear", "endpoint": "front"}):
        with pytest.raises(InvalidInputError, match="exactly one of deployment_name and endpoint"):
            batch_predict(client, frame(10), output=tmp_path / "s.csv", **names)
    assert everything_under(tmp_path) == []


# --------------------------------------------------------------------------------------------------
# 5. output="scores.csv" is one file
# --------------------------------------------------------------------------------------------------

READERS = {
    "parquet": pd.read_parquet,
    "csv": pd.read_csv,
    "jsonl": lambda path: pd.read_json(path, lines=True),
}


@pytest.mark.parametrize("fmt", ["parquet", "csv", "jsonl"])
def test_a_file_output_is_one_file(client, tmp_path, fmt):
    df = frame(2501, seed=2)
    expected = batch_predict(client, df, deployment_name="linear", chunk_size=300, feature_columns=FEATURES)
    target = tmp_path / f"scores.{fmt}"
    job = {"deployment_name": "linear", "output": target, "chunk_size": 300, "part_rows": 700, "feature_columns": FEATURES}
    summary = batch_predict(client, df, **job)
    assert target.is_file() and summary.output_path == str(target) and summary.rows == 2501
    written = READERS[fmt](target)
    # JSON lines keep no dtypes: pandas reads 34.0 back as an integer.
    pd.testing.assert_frame_equal(written, expected.reset_index(drop=True), check_dtype=fmt != "jsonl")
    if fmt == "parquet":
        import pyarrow.parquet as pq

        assert pq.read_table(target).num_rows == 2501
    pd.testing.assert_frame_equal(read_output(target), written)
    # Beside it only the hidden staging directory, which keeps the resume records but no part data.
    staging = tmp_path / f".scores.{fmt}.parts"
    assert sorted(p.name for p in tmp_path.iterdir()) == [staging.name, target.name]
    assert not list(staging.glob("part-*"))
    # A rerun of the finished job scores nothing and leaves the file as it was.
    before = target.read_bytes()
    again = batch_predict(client, df, **job)
    assert again.resumed_chunks == 9 and again.rows == 2501 and target.read_bytes() == before


@pytest.mark.parametrize("spelling", ["no suffix", "trailing slash"])
def test_a_path_without_suffix_or_ending_in_a_slash_is_a_directory_of_parts(client, tmp_path, spelling):
    df = frame(500, seed=3)
    if spelling == "no suffix":
        output, options, folder = str(tmp_path / "scores"), {"output_format": "csv"}, tmp_path / "scores"
    else:
        output, options, folder = str(tmp_path / "scores.csv") + "/", {}, tmp_path / "scores.csv"
    batch_predict(client, df, deployment_name="linear", output=output, chunk_size=100, part_rows=200,
                  feature_columns=FEATURES, **options)
    assert folder.is_dir() and (folder / "_manifest.json").is_file()
    assert sorted(p.name for p in folder.glob("part-*")) == ["part-00000.csv", "part-00001.csv", "part-00002.csv"]
    assert read_output(output)["id"].tolist() == list(range(500))


def test_an_existing_directory_of_parts_stays_one_and_resumes(client, tmp_path):
    folder = tmp_path / "scores.parquet"
    job = {"deployment_name": "linear", "chunk_size": 100, "feature_columns": FEATURES}
    batch_predict(client, frame(300), output=f"{folder}/", **job)  # as earlier versions wrote scores.parquet
    again = batch_predict(client, frame(300), output=folder, **job)
    assert again.resumed_chunks == 3 and folder.is_dir() and (folder / "_manifest.json").is_file()


def test_a_path_without_suffix_needs_an_output_format_and_a_compressed_name_is_refused(client, tmp_path):
    with pytest.raises(InvalidInputError, match="output_format="):
        batch_predict(client, frame(10), deployment_name="linear", output=tmp_path / "scores")
    with pytest.raises(InvalidInputError, match="compressed"):
        batch_predict(client, frame(10), deployment_name="linear", output=tmp_path / "scores.csv.gz")
    assert everything_under(tmp_path) == []


def test_a_file_output_replaces_an_existing_file_only_when_told_and_only_at_the_end(client, tmp_path):
    target = tmp_path / "scores.csv"
    target.write_text("someone else's file\n")
    with pytest.raises(ConflictError, match="overwrite=True"):
        batch_predict(client, frame(10), deployment_name="linear", output=target)
    assert target.read_text() == "someone else's file\n"
    seen = []
    batch_predict(client, frame(500), deployment_name="linear", output=target, overwrite=True, chunk_size=100,
                  part_rows=100, feature_columns=FEATURES, progress_callback=lambda p: seen.append(target.read_text()))
    assert seen == ["someone else's file\n"] * 5  # the old file stayed whole while the job ran
    assert read_output(target)["id"].tolist() == list(range(500))


@pytest.mark.parametrize("fmt", ["parquet", "csv", "jsonl"])
def test_parts_with_different_columns_join_into_one_file_with_all_of_them(client, tmp_path, fmt):
    df = frame(400, seed=9)
    df.loc[250:259, "b"] = 100.0  # only the chunk of rows 200-299 answers with a "note" column
    job = {"deployment_name": "uneven_records", "chunk_size": 100, "feature_columns": FEATURES}
    expected = batch_predict(client, df, **job)
    assert list(expected.columns) == ["id", "a", "b", "score", "note"]
    target = tmp_path / f"scores.{fmt}"
    batch_predict(client, df, output=target, part_rows=100, **job)
    written = read_output(target)
    pd.testing.assert_frame_equal(written, expected.reset_index(drop=True), check_dtype=False)
    assert written["note"].notna().sum() == 10


@pytest.mark.parametrize("fmt", ["parquet", "csv", "jsonl"])
def test_an_empty_input_makes_an_empty_file(client, tmp_path, fmt):
    target = tmp_path / f"empty.{fmt}"
    summary = batch_predict(client, frame(0), deployment_name="linear", output=target)
    assert summary.rows == 0 and target.is_file()
    assert read_output(target).empty


def test_a_finished_file_that_was_deleted_is_scored_again(client, tmp_path):
    target = tmp_path / "scores.parquet"
    job = {"deployment_name": "linear", "output": target, "chunk_size": 100, "feature_columns": FEATURES}
    batch_predict(client, frame(300), **job)
    target.unlink()
    again = batch_predict(client, frame(300), **job)
    assert again.resumed_chunks == 0 and again.rows == 300
    assert read_output(target)["id"].tolist() == list(range(300))


def test_rejected_rows_of_a_file_output_go_to_one_errors_file(client, tmp_path):
    df = frame(400, seed=7)
    df.loc[[5, 301], "a"] = -1.0
    target = tmp_path / "scores.csv"
    summary = batch_predict(client, df, deployment_name="picky", output=target, chunk_size=64, part_rows=128,
                            feature_columns=FEATURES, on_bad_rows="isolate")
    assert summary.failed_rows == 2 and summary.errors_path == f"{target}.errors.jsonl"
    assert [json.loads(line)["row"] for line in open(summary.errors_path)] == [5, 301]
    assert read_output(target)["id"].tolist() == [i for i in range(400) if i not in (5, 301)]
    # A directory of parts keeps its _errors/ and, when asked, joins them into errors_path too.
    named = tmp_path / "rejected.jsonl"
    folder = batch_predict(client, df, deployment_name="picky", output=f"{tmp_path / 'parts.csv'}/", chunk_size=64,
                           part_rows=128, feature_columns=FEATURES, on_bad_rows="isolate", errors_path=named)
    assert folder.errors_path == str(named)
    assert [json.loads(line)["row"] for line in named.read_text().splitlines()] == [5, 301]
    assert len(list((tmp_path / "parts.csv" / "_errors").iterdir())) == 2


JOB = textwrap.dedent(
    """
    import sys
    from deployflow import batch_predict, get_deploy_client
    client = get_deploy_client(sys.argv[1])
    batch_predict(client, sys.argv[2], deployment_name="slow_linear", output=sys.argv[3],
                  chunk_size=100, part_rows=200, concurrency=2, feature_columns=["a", "b"])
    """
)


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_a_killed_job_with_a_file_output_resumes_to_the_same_file(client, home, tmp_path, fmt):
    df = frame(3000, seed=4)
    source = tmp_path / "input.parquet"
    df.to_parquet(source, row_group_size=512)
    target = tmp_path / f"scores.{fmt}"
    records = tmp_path / f".scores.{fmt}.parts" / "_parts"
    script = tmp_path / "job.py"
    script.write_text(JOB)
    proc = subprocess.Popen([sys.executable, str(script), f"local://{home}", str(source), str(target)])

    def committed() -> int:
        return len(list(records.glob("*.json"))) if records.exists() else 0

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and committed() < 3:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done_before = committed()
    assert 3 <= done_before < 15, "the job was not killed part way"
    assert not target.exists()  # the file appears whole at the end, or not at all
    with pytest.raises(InvalidInputError, match="has not finished"):
        read_output(target)

    job = {"output": target, "chunk_size": 100, "part_rows": 200, "feature_columns": FEATURES}
    summary = batch_predict(client, source, deployment_name="slow_linear", concurrency=2, **job)
    assert summary.resumed_chunks >= 2 * done_before and summary.rows == 3000
    clean = tmp_path / f"clean.{fmt}"
    batch_predict(client, source, deployment_name="linear", **{**job, "output": clean})
    assert target.read_bytes() == clean.read_bytes()
    assert read_output(target)["id"].tolist() == list(range(3000))


# --------------------------------------------------------------------------------------------------
# 6. Ordinary mistakes: InvalidInputError naming the file or column, nothing sent, nothing written
# --------------------------------------------------------------------------------------------------


def _unreadable(tmp_path, kind):
    if kind == "empty parquet":
        path = tmp_path / "in.parquet"
        path.write_bytes(b"")
    elif kind == "truncated parquet":
        frame(200).to_parquet(tmp_path / "whole.parquet")
        path = tmp_path / "in.parquet"
        path.write_bytes((tmp_path / "whole.parquet").read_bytes()[:400])
    elif kind == "csv text named parquet":
        path = tmp_path / "in.parquet"
        frame(20).to_csv(path, index=False)
    elif kind == "empty csv":
        path = tmp_path / "in.csv"
        path.write_bytes(b"")
    else:  # broken JSON lines
        path = tmp_path / "in.jsonl"
        path.write_text('{"a": 1, "b": 2}\n{"a": 3, "b":\n')
    return path


@pytest.mark.parametrize(
    "kind", ["empty parquet", "truncated parquet", "csv text named parquet", "empty csv", "broken jsonl"]
)
def test_an_unreadable_input_file_is_invalid_input_naming_it(counting, tmp_path, kind):
    remote, proxy = counting
    source = _unreadable(tmp_path, kind)
    out = tmp_path / "out" / "scores.parquet"
    with pytest.raises(InvalidInputError) as info:
        batch_predict(remote, source, deployment_name="linear", output=out)
    assert source.name in str(info.value)
    assert proxy.requests == 0
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("output", ["scores.csv", "scores/", "nested/scores.csv"])
def test_an_output_under_a_file_is_invalid_input_naming_it(counting, tmp_path, output):
    remote, proxy = counting
    blocker = tmp_path / "blocker"
    blocker.write_text("not a directory")
    path = os.path.join(blocker, output)
    with pytest.raises(InvalidInputError, match="blocker"):
        batch_predict(remote, frame(10), deployment_name="linear", output=path, output_format="csv")
    assert proxy.requests == 0
    assert blocker.read_text() == "not a directory"


@pytest.fixture
def lock():
    """Makes a directory read-only (for root too, whom mode bits do not stop), until the test ends."""
    locked = []

    def make_read_only(folder):
        folder.chmod(0o555)
        if os.geteuid() == 0:  # an immutable directory stops root too
            if shutil.which("chattr") is None or subprocess.run(["chattr", "+i", str(folder)], check=False).returncode:
                pytest.skip("running as root without chattr: no way to make a directory read-only")
        locked.append(folder)
        return folder

    yield make_read_only
    for folder in locked:
        if os.geteuid() == 0:
            subprocess.run(["chattr", "-i", str(folder)], check=True)
        folder.chmod(0o755)


@pytest.mark.parametrize("output", ["scores.csv", "scores/"])
def test_a_read_only_output_directory_is_invalid_input_naming_it(counting, tmp_path, lock, output):
    remote, proxy = counting
    locked = tmp_path / "locked"
    locked.mkdir()
    lock(locked)
    with pytest.raises(InvalidInputError, match="locked"):
        batch_predict(remote, frame(10), deployment_name="linear", output=os.path.join(locked, output), output_format="csv")
    assert proxy.requests == 0
    assert list(locked.iterdir()) == []


def test_an_existing_output_directory_under_a_read_only_parent_is_written(counting, tmp_path, lock):
    remote, _ = counting
    mount = tmp_path / "volume"
    (mount / "scores").mkdir(parents=True)  # a writable mount point in a read-only parent
    lock(mount)
    summary = batch_predict(remote, frame(10), deployment_name="linear", output=mount / "scores", output_format="csv")
    assert summary.rows == 10 and read_output(mount / "scores")["id"].tolist() == list(range(10))


def _source(tmp_path, kind, df):
    if kind == "dataframe":
        return df
    if kind == "iterator":
        return iter([df.iloc[:5], df.iloc[5:]])
    path = tmp_path / f"in.{kind}"
    if kind == "parquet":
        df.to_parquet(path)
    elif kind == "csv":
        df.to_csv(path, index=False)
    else:
        df.to_json(path, orient="records", lines=True)
    return path


@pytest.mark.parametrize("kind", ["dataframe", "parquet", "csv", "jsonl", "iterator"])
@pytest.mark.parametrize(
    "columns",
    [
        {"feature_columns": ["a", "nope"]},
        {"keep_columns": ["id", "nope"]},
        {"feature_columns": ["a", "b"], "keep_columns": ["nope"]},
    ],
    ids=["feature", "keep", "both"],
)
def test_a_missing_column_is_invalid_input_naming_it(counting, tmp_path, kind, columns):
    remote, proxy = counting
    out = tmp_path / "out" / "scores.csv"
    with pytest.raises(InvalidInputError, match="'nope'"):
        batch_predict(remote, _source(tmp_path, kind, frame(12)), deployment_name="linear", output=out,
                      chunk_size=4, **columns)
    assert proxy.requests == 0
    assert not (tmp_path / "out").exists()


def test_a_column_missing_from_a_later_frame_is_invalid_input(counting, tmp_path):
    remote, _ = counting
    df = frame(12)
    pieces = iter([df.iloc[:6], df.iloc[6:].drop(columns="b")])
    with pytest.raises(InvalidInputError, match="'b'") as info:
        batch_predict(remote, pieces, deployment_name="linear", chunk_size=3, feature_columns=FEATURES)
    assert "item 1" in str(info.value).lower()
    lines = tmp_path / "later.jsonl"
    with open(lines, "w") as handle:  # JSON lines may drop a key part way through the file
        df.iloc[:4].to_json(handle, orient="records", lines=True)
        df.iloc[4:].drop(columns="b").to_json(handle, orient="records", lines=True)
    with pytest.raises(InvalidInputError, match="'b'") as info:
        batch_predict(remote, lines, deployment_name="linear", chunk_size=4, feature_columns=FEATURES)
    assert "later.jsonl" in str(info.value)


def test_a_corrupt_part_is_invalid_input_naming_it(client, tmp_path):
    folder = tmp_path / "scores.parquet"
    batch_predict(client, frame(400), deployment_name="linear", output=f"{folder}/", chunk_size=100, part_rows=100)
    (folder / "part-00002.parquet").write_bytes(b"PAR1 and then nothing")
    with pytest.raises(InvalidInputError, match="part-00002.parquet"):
        read_output(folder)
    single = tmp_path / "single.parquet"
    batch_predict(client, frame(400), deployment_name="linear", output=single, chunk_size=100)
    single.write_bytes(single.read_bytes()[:100])
    with pytest.raises(InvalidInputError, match="single.parquet"):
        read_output(single)
    with pytest.raises(InvalidInputError, match="does not exist"):
        read_output(tmp_path / "never.csv")


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"concurrency": 0}, "concurrency"),
        ({"concurrency": 1.5}, "concurrency"),
        ({"chunk_size": "many"}, "chunk_size"),
        ({"chunk_size": 0}, "chunk_size"),
        ({"part_rows": 0}, "part_rows"),
        ({"part_rows": True}, "part_rows"),
        ({"max_chunk_retries": -1}, "max_chunk_retries"),
        ({"max_chunk_retries": True}, "max_chunk_retries"),
        ({"retry_backoff": -1}, "retry_backoff"),
        ({"retry_backoff": "soon"}, "retry_backoff"),
        ({"switch_interval": 0}, "switch_interval"),
        ({"switch_interval": -0.1}, "switch_interval"),
        ({"resume": "perhaps"}, "resume"),
        ({"overwrite": "perhaps"}, "overwrite"),
        ({"progress": "perhaps"}, "progress"),
        ({"params": "k=1"}, "params"),
        ({"prediction_column": ""}, "prediction_column"),
        ({"feature_columns": "a"}, "feature_columns"),
        ({"keep_columns": "id"}, "keep_columns"),
        ({"output": 42}, "output"),
        ({"errors_path": 42, "on_bad_rows": "isolate"}, "errors_path"),
    ],
)
def test_bad_numbers_and_flags_are_refused_before_anything_is_sent_or_written(counting, tmp_path, kwargs, name):
    remote, proxy = counting
    with pytest.raises(InvalidInputError, match=name):
        batch_predict(remote, frame(10), deployment_name="linear", **{"output": tmp_path / "out" / "s.csv", **kwargs})
    assert proxy.requests == 0
    assert not (tmp_path / "out").exists()


def test_numbers_and_flags_are_read_as_the_rest_of_deployflow_reads_them(counting):
    remote, proxy = counting
    out = batch_predict(remote, frame(300), deployment_name="linear", chunk_size="100", concurrency=2.0, max_chunk_retries="1",
                        retry_backoff="0.5", resume="no", overwrite=0, feature_columns=FEATURES)
    assert out.attrs["deployflow_summary"]["chunks"] == 3 and proxy.requests == 3


def test_an_errors_path_under_a_file_is_refused_before_scoring(counting, tmp_path):
    remote, proxy = counting
    blocker = tmp_path / "blocker"
    blocker.write_text("x")
    with pytest.raises(InvalidInputError, match="blocker"):
        batch_predict(remote, frame(10), deployment_name="linear", on_bad_rows="isolate", errors_path=blocker / "bad.jsonl")
    assert proxy.requests == 0


# --------------------------------------------------------------------------------------------------
# 7. Client options that are dicts reach Dask workers
# --------------------------------------------------------------------------------------------------


class HeaderRecordingProxy(FaultProxy):
    """Passes every request through, noting the X-Team header of each scoring POST."""

    def __init__(self, upstream: str) -> None:
        super().__init__(upstream)
        self.teams: list[str | None] = []

    def _handle(self, handler, body):
        if handler.command == "POST":
            with self.lock:
                self.teams.append(handler.headers.get("X-Team"))
        super()._handle(handler, body)


def test_dask_workers_build_clients_from_dict_options(client):
    dd = pytest.importorskip("dask.dataframe")
    distributed = pytest.importorskip("distributed")
    df = frame(2000, seed=5)
    with HeaderRecordingProxy(client.get_deployment("linear")["url"]) as proxy:
        remote = get_deploy_client(f"serving+{proxy.url}", headers={"X-Team": "scoring"}, max_retries=2)
        expected = batch_predict(remote, df, deployment_name="linear", chunk_size=250, feature_columns=FEATURES)
        proxy.teams.clear()
        with distributed.LocalCluster(n_workers=1, threads_per_worker=2, processes=True, dashboard_address=None) as cluster:
            with distributed.Client(cluster):
                scored = batch_predict(remote, dd.from_pandas(df, npartitions=4), deployment_name="linear",
                                       chunk_size=250, feature_columns=FEATURES)
                result = scored.compute()
    pd.testing.assert_frame_equal(result, expected)
    assert len(proxy.teams) >= 8 and set(proxy.teams) == {"scoring"}  # the workers' requests carried it


def test_a_dask_job_writes_one_file_and_checks_columns_first(client, tmp_path):
    dd = pytest.importorskip("dask.dataframe")
    distributed = pytest.importorskip("distributed")
    df = frame(1200, seed=8)
    ddf = dd.from_pandas(df, npartitions=12)
    remote = get_deploy_client(f"serving+{client.get_deployment('linear')['url']}")
    with distributed.LocalCluster(n_workers=1, threads_per_worker=2, processes=False, dashboard_address=None) as cluster:
        with distributed.Client(cluster):
            with pytest.raises(InvalidInputError, match="'nope'"):
                batch_predict(remote, ddf, output=tmp_path / "bad.csv", feature_columns=["a", "nope"])
            target = tmp_path / "scores.csv"
            summary = batch_predict(remote, ddf, output=target, chunk_size=100, feature_columns=FEATURES)  # no name
    assert summary.rows == 1200 and target.is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scores.csv"]  # the staged parts are gone
    written = pd.read_csv(target)
    assert written["id"].tolist() == list(range(1200))  # partition 10 after partition 9, not after 1
    np.testing.assert_allclose(written["prediction"].to_numpy(), expected_linear(df))


def test_a_client_spec_caches_one_client_per_options_and_withholds_secret_headers():
    from deployflow.batch._dask import ClientSpec

    secret = "Bearer header-secret-123456"
    with get_deploy_client("serving+http://127.0.0.1:9", headers={"X-Team": "a", "Authorization": secret}) as remote:
        spec = ClientSpec.from_client(remote)
    assert secret.encode() not in pickle.dumps(spec) and secret not in repr(spec)
    assert "headers.Authorization" in spec.withheld
    built = spec.build()
    assert pickle.loads(pickle.dumps(spec)).build() is built
    assert built.options["headers"] == {"X-Team": "a"}


# --------------------------------------------------------------------------------------------------
# 15. Nothing a job writes holds a secret; resuming does not depend on one
# --------------------------------------------------------------------------------------------------


def test_no_file_a_job_writes_holds_the_targets_password_and_resume_ignores_it(client, tmp_path):
    fsspec = pytest.importorskip("fsspec")
    password = "hunter2-batch-password"
    port = client.get_deployment("linear")["url"].rsplit(":", 1)[1]
    uri = f"serving+http://scorer:{password}@127.0.0.1:{port}"
    df = frame(600, seed=6)
    source = f"memory://reader:{password}@deployflow-secrets/in.parquet"
    with fsspec.open(source, "wb") as handle:
        df.to_parquet(handle)
    outputs = [str(tmp_path / "parts.parquet") + "/", str(tmp_path / "one.csv")]
    job = {"deployment_name": "linear", "chunk_size": 100, "part_rows": 200, "feature_columns": FEATURES}
    with get_deploy_client(uri) as remote:
        for output in outputs:
            summary = batch_predict(remote, source, output=output, **job)
            assert summary.rows == 600
    # Credentials given as options, a token and a key header, are not written either.
    options = {"auth_token": password, "headers": {"X-Api-Key": password}}
    with get_deploy_client(f"serving+http://127.0.0.1:{port}", **options) as keyed:
        batch_predict(keyed, source, output=tmp_path / "keyed.jsonl", **job)
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert any(p.name == "_manifest.json" for p in written) and len(written) > 6
    for path in written:
        assert password.encode() not in path.read_bytes(), path
    manifest = json.loads((tmp_path / "parts.parquet" / "_manifest.json").read_text())
    assert manifest["job"]["target"] == f"serving+http://scorer:***@127.0.0.1:{port}"
    # The same job with a new password is the same job: it resumes. Another user is another job.
    with get_deploy_client(uri.replace(password, "rotated-password-42")) as rotated:
        again = batch_predict(rotated, source, output=outputs[1], **job)
        assert again.resumed_chunks == 6
    with get_deploy_client(uri.replace("scorer:", "auditor:")) as other:
        with pytest.raises(ConflictError, match="target") as info:
            batch_predict(other, source, output=outputs[1], **job)
    assert password not in str(info.value)
    fsspec.filesystem("memory").rm("/reader:" + password + "@deployflow-secrets", recursive=True)
