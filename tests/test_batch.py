"""batch_predict against real local-target servers: order, formats, faults, resume, bad rows, Dask."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
import threading
import time
import warnings

import deployflow
import numpy as np
import pandas as pd
import pytest
from deployflow import (
    BadRowsError,
    ConflictError,
    InvalidInputError,
    batch_predict,
    get_deploy_client,
    read_output,
)
from deployflow.batch._runner import parse_predictions
from support.batch_data import PredictOnlyServingClient, expected_linear, frame, model
from support.fault_proxy import FaultProxy
from support.metrics import scrape, value


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    return tmp_path_factory.mktemp("batch-home")


@pytest.fixture(scope="module")
def client(home):
    client = get_deploy_client(f"local://{home}")
    for name in ("linear", "two_outputs", "records", "picky", "slow_linear"):
        client.create_deployment(name, model(name))
    yield client
    for deployment in client.list_deployments():
        client.delete_deployment(deployment["name"])


def single_predict(client, name: str, df: pd.DataFrame) -> list:
    return client.predict(name, df[["a", "b"]])["predictions"]


def test_dataframe_order_and_content_equal_a_single_predict(client):
    df = frame(5003)
    df.index = df.index + 1000  # a user's index survives
    out = batch_predict(client, df, deployment_name="linear", chunk_size=400, concurrency=3, feature_columns=["a", "b"])
    assert list(out.index) == list(df.index)
    assert list(out.columns) == ["id", "a", "b", "prediction"]
    np.testing.assert_allclose(out["prediction"].to_numpy(), single_predict(client, "linear", df))
    pd.testing.assert_frame_equal(out[["id", "a", "b"]], df)
    summary = out.attrs["deployflow_summary"]
    assert summary["rows"] == 5003 and summary["chunks"] == 13 and summary["failed_rows"] == 0


@pytest.mark.parametrize("fmt", ["parquet", "csv", "jsonl"])
def test_file_inputs_and_outputs(client, tmp_path, fmt):
    df = frame(2501, seed=1)
    source = tmp_path / f"input.{fmt}"
    if fmt == "parquet":
        df.to_parquet(source, row_group_size=700)
    elif fmt == "csv":
        df.to_csv(source, index=False)
    else:
        df.to_json(source, orient="records", lines=True)
    expected = single_predict(client, "linear", df)

    in_memory = batch_predict(client, str(source), deployment_name="linear", chunk_size=300, feature_columns=["a", "b"])
    np.testing.assert_allclose(in_memory["prediction"].to_numpy(), expected)
    assert in_memory["id"].tolist() == list(range(2501))

    out_dir = tmp_path / f"scores.{fmt}"
    summary = batch_predict(
        client, source, deployment_name="linear", output=f"{out_dir}/", chunk_size=300, part_rows=700,
        feature_columns=["a", "b"], keep_columns=["id"],
    )
    assert summary.rows == 2501 and summary.chunks == 9 and summary.output_path == str(out_dir)
    written = read_output(out_dir)
    assert written["id"].tolist() == list(range(2501))
    np.testing.assert_allclose(written["prediction"].to_numpy(), expected)
    manifest = json.loads((out_dir / "_manifest.json").read_text())
    # part_rows=700 is two whole chunks of 300: nine chunks make four parts of two and one of one.
    assert manifest["complete"] is True and [p["rows"] for p in manifest["parts"].values()] == [600, 600, 600, 600, 101]


def test_iterator_of_frames_of_any_sizes_is_rechunked(client):
    df = frame(1000, seed=2)
    pieces = [df.iloc[0:1], df.iloc[1:333], df.iloc[333:334], df.iloc[334:1000]]
    chunk_rows = []
    out = batch_predict(
        client,
        iter(pieces),
        deployment_name="linear",
        chunk_size=250,
        feature_columns=["a", "b"],
        progress_callback=lambda p: chunk_rows.append(p.rows_done),
    )
    assert out["id"].tolist() == list(range(1000))
    np.testing.assert_allclose(out["prediction"].to_numpy(), expected_linear(df))
    assert chunk_rows == [250, 500, 750, 1000]


def test_multi_output_and_record_predictions_become_columns(client):
    df = frame(600, seed=3)
    two = batch_predict(client, df, deployment_name="two_outputs", chunk_size=100, feature_columns=["a", "b"], keep_columns=[])
    assert list(two.columns) == ["prediction_0", "prediction_1"]
    np.testing.assert_allclose(two["prediction_1"].to_numpy(), df["b"].to_numpy() * 10)
    named = batch_predict(client, df, deployment_name="records", chunk_size=100, feature_columns=["a", "b"], keep_columns=["id"])
    assert list(named.columns) == ["id", "label", "score"]
    assert named["label"].tolist() == ["pos" if a > 0 else "neg" for a in df["a"]]


RAGGED = '''
def ragged(data):
    """One list per row (tokens, say), as long as the row's a rounded to 0..3."""
    return [list(range(n)) for n in (data["a"].abs() * 10).round().astype(int) % 4]
'''


@pytest.mark.parametrize(
    "answer",
    [
        [[1, 2], [3]],
        [[1], [2, 3]],
        [[1.5, "a"], [2.0]],
        [[True, False], [True]],
        [[1, 2], (3,)],
        [[[1], 2], [[3]]],
        [[1, None], [2]],
        [[1, 2], [3, 4]],
    ],
)
def test_lists_of_different_lengths_become_the_columns_pandas_padded_them_to_without_its_warning(answer):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = pd.DataFrame(answer)  # what pandas builds, with a deprecation warning when ragged
    expected.columns = [f"prediction_{i}" for i in range(expected.shape[1])]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        parsed = parse_predictions({"predictions": answer}, len(answer), "prediction")
    pd.testing.assert_frame_equal(parsed, expected)


@pytest.mark.parametrize("answer", [[[1, 2], 3], [1, [2, 3]], [[1, 2], None], [0.5, [1], "x"], [{"a": 1}, 2]])
def test_lists_mixed_with_other_values_stay_whole_one_per_row(answer):
    parsed = parse_predictions(answer, len(answer), "prediction")
    assert list(parsed.columns) == ["prediction"] and parsed["prediction"].tolist() == answer


@pytest.mark.parametrize(
    ("answer", "says"),
    [
        ({"predictions": "yes"}, "it is a string, not a list"),
        ({"predictions": 5}, "it is a number, not a list"),
        ({"predictions": None}, "it is null, not a list"),
        ({"a": [1, 2, 3], "b": [1]}, "same length"),
        ({"predictions": {"a": 1, "b": 2}}, "scalar values"),
    ],
)
def test_an_answer_that_is_not_one_prediction_per_row_is_an_invalid_input_error_naming_the_rows(answer, says):
    with pytest.raises(InvalidInputError, match="answer for the 3 input rows 10-12 is not one prediction per row") as info:
        parse_predictions(answer, 3, "prediction", start=10)
    assert says in str(info.value)


@pytest.mark.parametrize("answer", [np.array([1.5, 2.5, 3.5]), pd.Series([1, 2, 3]), (1, 2, 3)])
def test_a_plugin_answer_of_another_sequence_type_is_one_column(answer):
    # A plugin's predict may return an array, a Series or a tuple instead of JSON's list.
    parsed = parse_predictions(answer, 3, "prediction")
    assert list(parsed.columns) == ["prediction"] and parsed["prediction"].tolist() == list(answer)


def test_a_job_whose_model_answers_lists_of_any_length_keeps_every_value(client, tmp_path):
    (tmp_path / "ragged.py").write_text(RAGGED)
    client.create_deployment("ragged", f"python:{tmp_path / 'ragged.py'}:ragged")
    try:
        df = frame(400, seed=5)
        lengths = ((df["a"].abs() * 10).round().astype(int) % 4).tolist()
        assert set(lengths) == {0, 1, 2, 3}
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            out = batch_predict(client, df, deployment_name="ragged", chunk_size=50, feature_columns=["a", "b"],
                                keep_columns=["id"])
        assert list(out.columns) == ["id", "prediction_0", "prediction_1", "prediction_2"]
        assert out["id"].tolist() == df["id"].tolist()
        got = [[v for v in row if not pd.isna(v)] for row in out[["prediction_0", "prediction_1", "prediction_2"]].values.tolist()]
        assert got == [list(range(n)) for n in lengths]
    finally:
        client.delete_deployment("ragged")


def test_bad_rows_stop_the_job_with_the_row_range_by_default(client):
    df = frame(1000, seed=4)
    df.loc[617, "a"] = -1.0
    with pytest.raises(BadRowsError) as info:
        batch_predict(client, df, deployment_name="picky", chunk_size=200, concurrency=1, feature_columns=["a", "b"])
    assert info.value.row_range == (600, 799)
    assert "rows 600-799" in str(info.value)
    assert "negative" in str(info.value)


def test_bad_rows_isolated_into_the_errors_file(client, tmp_path):
    df = frame(1000, seed=5)
    bad = [3, 404, 405, 999]
    df.loc[bad, "a"] = -1.0
    out_dir = tmp_path / "picky.parquet"
    summary = batch_predict(
        client, df, deployment_name="picky", output=f"{out_dir}/", chunk_size=128, feature_columns=["a", "b"], on_bad_rows="isolate"
    )
    assert summary.failed_rows == 4 and summary.rows == 1000
    written = read_output(out_dir)
    assert written["id"].tolist() == [i for i in range(1000) if i not in bad]
    errors = [json.loads(line) for f in sorted((out_dir / "_errors").iterdir()) for line in f.read_text().splitlines()]
    assert [e["row"] for e in errors] == bad
    assert all(e["status_code"] == 400 and "negative" in e["message"] for e in errors)
    assert errors[0]["input"]["id"] == 3 and errors[0]["input"]["a"] == -1.0


def test_isolate_without_output_needs_an_errors_path(client, tmp_path):
    df = frame(50)
    df.loc[7, "a"] = -2.0
    with pytest.raises(InvalidInputError, match="errors_path"):
        batch_predict(client, df, deployment_name="picky", on_bad_rows="isolate")
    errors_file = tmp_path / "bad.jsonl"
    out = batch_predict(client, df, deployment_name="picky", chunk_size=16, on_bad_rows="isolate", errors_path=errors_file, feature_columns=["a", "b"])
    assert 7 not in out["id"].tolist() and len(out) == 49
    assert [json.loads(line)["row"] for line in errors_file.read_text().splitlines()] == [7]


@pytest.mark.parametrize("path", ["event loop", "thread pool"])
def test_faults_between_client_and_server_lose_and_duplicate_nothing(client, tmp_path, path):
    df = frame(6000, seed=6)
    clean = batch_predict(client, df, deployment_name="linear", chunk_size=200, feature_columns=["a", "b"])
    upstream = client.get_deployment("linear")["url"]
    with FaultProxy(upstream, every={3: "503", 5: "reset", 7: "slow"}) as proxy:
        options = {"backoff_factor": 0.05, "backoff_max": 0.5, "max_retries": 8}
        if path == "event loop":
            remote = get_deploy_client(f"serving+{proxy.url}", **options)
            assert remote.batch_http_route() is not None
        else:
            remote = PredictOnlyServingClient(f"serving+{proxy.url}", **options)
        restarted = threading.Event()

        def restart_midway():
            while proxy.requests < 12:
                time.sleep(0.01)
            proxy.upstream = None  # the server goes away...
            client.delete_deployment("linear")
            client.create_deployment("linear", model("linear"))
            proxy.upstream = client.get_deployment("linear")["url"]  # ...and comes back on a new port
            restarted.set()

        thread = threading.Thread(target=restart_midway)
        thread.start()
        out_dir = tmp_path / "faulty.parquet"
        summary = batch_predict(
            remote, df, deployment_name="linear", output=out_dir, chunk_size=200, concurrency=3,
            feature_columns=["a", "b"], retry_backoff=0.05, max_chunk_retries=10,  # the chunk's whole budget
        )
        thread.join()
    assert restarted.is_set()
    assert proxy.faults.get("503") and proxy.faults.get("reset") and proxy.faults.get("slow")
    written = read_output(out_dir)
    pd.testing.assert_frame_equal(written, clean.reset_index(drop=True))
    assert summary.rows == 6000 and summary.failed_rows == 0
    # Every chunk reached the model exactly once with success: nothing lost, nothing scored twice.
    assert proxy.forwarded == 30


JOB = textwrap.dedent(
    """
    import sys
    from deployflow import batch_predict, get_deploy_client
    client = get_deploy_client(sys.argv[1])
    summary = batch_predict(client, sys.argv[2], deployment_name="slow_linear", output=sys.argv[3],
                            chunk_size=100, part_rows=200, concurrency=2, feature_columns=["a", "b"])
    print(summary.to_dict())
    """
)


def test_killed_job_resumes_to_the_same_output(client, home, tmp_path):
    df = frame(4000, seed=7)
    source = tmp_path / "input.parquet"
    df.to_parquet(source, row_group_size=512)
    out_dir = tmp_path / "resumed.parquet"
    script = tmp_path / "job.py"
    script.write_text(JOB)
    proc = subprocess.Popen([sys.executable, str(script), f"local://{home}", str(source), f"{out_dir}/"])
    records = out_dir / "_parts"

    def committed() -> int:
        return len(list(records.glob("*.json"))) if records.exists() else 0

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and committed() < 4:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done_before = committed()
    assert json.loads((out_dir / "_manifest.json").read_text())["complete"] is False
    assert 4 <= done_before < 20, "the job was not killed part way"

    job = {"deployment_name": "slow_linear", "output": f"{out_dir}/", "chunk_size": 100, "part_rows": 200, "feature_columns": ["a", "b"]}
    summary = batch_predict(client, source, concurrency=2, **job)
    assert summary.resumed_chunks >= 2 * done_before and summary.rows == 4000
    resumed = read_output(out_dir)
    clean = batch_predict(client, df, deployment_name="linear", chunk_size=100, feature_columns=["a", "b"])
    pd.testing.assert_frame_equal(resumed, clean)
    assert not [p for p in out_dir.iterdir() if p.name.startswith(".tmp-")]

    # The same output with a changed input: refused, unless told to start over.
    changed = df.copy()
    changed.loc[150, "b"] += 1
    changed.to_parquet(source, row_group_size=512)
    with pytest.raises(ConflictError, match="input changed"):
        batch_predict(client, source, **job)
    again = batch_predict(client, source, deployment_name="linear", output=f"{out_dir}/", chunk_size=100, feature_columns=["a", "b"], overwrite=True)
    assert again.resumed_chunks == 0
    assert read_output(out_dir)["b"][150] == df["b"][150] + 1


def test_other_settings_refuse_to_resume(client, tmp_path):
    df = frame(300)
    out_dir = tmp_path / "o.csv"
    batch_predict(client, df, deployment_name="linear", output=out_dir, chunk_size=100, feature_columns=["a", "b"])
    with pytest.raises(ConflictError, match="chunk_size"):
        batch_predict(client, df, deployment_name="linear", output=out_dir, chunk_size=50, feature_columns=["a", "b"])
    with pytest.raises(ConflictError, match="part_chunks"):
        batch_predict(client, df, deployment_name="linear", output=out_dir, chunk_size=100, part_rows=100, feature_columns=["a", "b"])
    with pytest.raises(ConflictError, match="resume=True"):
        batch_predict(client, df, deployment_name="linear", output=out_dir, chunk_size=100, feature_columns=["a", "b"], resume=False)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({}, "exactly one of deployment_name and endpoint"),
        ({"deployment_name": "linear", "endpoint": "e"}, "exactly one"),
        ({"deployment_name": "linear", "chunk_size": 0}, "chunk_size"),
        ({"deployment_name": "linear", "concurrency": -1}, "concurrency"),
        ({"deployment_name": "linear", "on_bad_rows": "ignore"}, "on_bad_rows"),
    ],
)
def test_bad_arguments(client, kwargs, message):
    with pytest.raises(InvalidInputError, match=message):
        batch_predict(client, frame(10), **kwargs)


def test_bad_inputs(client, tmp_path):
    with pytest.raises(InvalidInputError, match="does not exist"):
        batch_predict(client, tmp_path / "missing.parquet", deployment_name="linear")
    (tmp_path / "data.xlsx").write_text("x")
    with pytest.raises(InvalidInputError, match="format"):
        batch_predict(client, tmp_path / "data.xlsx", deployment_name="linear")
    with pytest.raises(InvalidInputError, match="Cannot batch-score"):
        batch_predict(client, 42, deployment_name="linear")
    with pytest.raises(InvalidInputError, match="not a DataFrame"):
        batch_predict(client, iter([frame(3), "oops"]), deployment_name="linear")


def test_dask_dataframe_on_a_local_cluster(client, home, tmp_path):
    dd = pytest.importorskip("dask.dataframe")
    distributed = pytest.importorskip("distributed")
    df = frame(3000, seed=8)
    ddf = dd.from_pandas(df, npartitions=6)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        with distributed.Client(cluster) as dask_client:
            assert len(dask_client.scheduler_info()["workers"]) == 2
            scored = batch_predict(client, ddf, deployment_name="linear", chunk_size=200, feature_columns=["a", "b"])
            result = scored.compute()
            expected = batch_predict(client, df, deployment_name="linear", chunk_size=200, feature_columns=["a", "b"])
            pd.testing.assert_frame_equal(result, expected)
            out_dir = tmp_path / "dask.parquet"
            summary = batch_predict(client, ddf, deployment_name="linear", output=out_dir, feature_columns=["a", "b"])
            assert summary.rows == 3000
            assert read_output(out_dir)["id"].tolist() == list(range(3000))


def test_dask_partitions_whose_list_outputs_differ_in_length_get_the_first_rows_columns(client, tmp_path):
    dd = pytest.importorskip("dask.dataframe")
    (tmp_path / "ragged.py").write_text(RAGGED)
    client.create_deployment("ragged_dask", f"python:{tmp_path / 'ragged.py'}:ragged")
    try:
        df = frame(800, seed=5)
        lengths = ((df["a"].abs() * 10).round().astype(int) % 4).to_numpy().copy()
        # The first two rows (they set the output's columns) answer 2 values; rows later answer 0-3.
        df.loc[0:1, "a"] = 0.2
        lengths[:2] = 2
        shorter = df[lengths <= 2].reset_index(drop=True)
        ddf = dd.from_pandas(shorter, npartitions=4)
        out = batch_predict(client, ddf, deployment_name="ragged_dask", chunk_size=50, feature_columns=["a", "b"],
                            keep_columns=["id"]).compute(scheduler="threads")
        assert list(out.columns) == ["id", "prediction_0", "prediction_1"]
        got = [[v for v in row if not pd.isna(v)] for row in out[["prediction_0", "prediction_1"]].values.tolist()]
        assert got == [list(range(n)) for n in lengths[lengths <= 2]]
        longer = dd.from_pandas(df, npartitions=4)
        with pytest.raises(InvalidInputError, match=r"columns \['prediction_2'\] that those of the first rows"):
            batch_predict(client, longer, deployment_name="ragged_dask", chunk_size=50, feature_columns=["a", "b"],
                          keep_columns=["id"]).compute(scheduler="threads")
    finally:
        client.delete_deployment("ragged_dask")


def test_a_dask_job_writes_its_output_whole_each_time(client, tmp_path):
    dd = pytest.importorskip("dask.dataframe")
    df = frame(600, seed=9)
    ddf = dd.from_pandas(df, npartitions=3)
    out = tmp_path / "scores.parquet"
    staged = tmp_path / ".scores.parquet.parts"
    staged.mkdir()
    (staged / "part.7.parquet").write_bytes(b"what a killed run left")
    for _ in range(2):
        summary = batch_predict(client, ddf, deployment_name="linear", output=out, feature_columns=["a", "b"])
        assert summary.rows == 600 and summary.resumed_chunks == 0
        assert read_output(out)["id"].tolist() == list(range(600))
        assert not staged.exists()


def test_dask_workers_get_no_secret_options():
    from deployflow.batch._dask import ClientSpec

    class Fake:
        target_uri = "serving+http://127.0.0.1:1"
        options = {"auth_token": "very-secret-token", "timeout": 5, "api_key": "k" * 10}

    spec = ClientSpec.from_client(Fake())
    assert dict(spec.options) == {"timeout": 5}
    assert spec.withheld == ("api_key", "auth_token")
    import pickle

    assert b"very-secret-token" not in pickle.dumps(spec)


def test_cli_batch_predict_writes_and_resumes(client, home, tmp_path):
    from click.testing import CliRunner
    from deployflow.cli import cli

    df = frame(900, seed=9)
    source = tmp_path / "in.csv"
    df.to_csv(source, index=False)
    out_dir = tmp_path / "cli.parquet"
    args = [
        "batch-predict", "-t", f"local://{home}", "--name", "linear", "-I", str(source), "-O", str(out_dir),
        "--chunk-size", "200", "--feature-column", "a", "--feature-column", "b", "--keep-column", "id",
    ]
    first = CliRunner().invoke(cli, args)
    assert first.exit_code == 0, first.output
    summary = json.loads(first.output)
    assert summary["rows"] == 900 and summary["chunks"] == 5 and summary["output_path"] == str(out_dir)
    written = read_output(out_dir)
    assert list(written.columns) == ["id", "prediction"]
    np.testing.assert_allclose(written["prediction"].to_numpy(), expected_linear(df))
    again = CliRunner().invoke(cli, args)
    assert again.exit_code == 0 and json.loads(again.output)["resumed_chunks"] == 5

    both = CliRunner().invoke(cli, ["batch-predict", "-t", "local", "--name", "a", "--endpoint", "b", "-I", str(source), "-O", "x.parquet"])
    assert both.exit_code == 2 and len(both.output.strip().splitlines()) == 1
    refused = CliRunner().invoke(cli, [*args[:-6], "--chunk-size", "100"])
    assert refused.exit_code == 1 and refused.output.startswith("Error: ") and "refusing to resume" in refused.output


def test_fsspec_url_input(client):
    fsspec = pytest.importorskip("fsspec")
    df = frame(700, seed=10)
    with fsspec.open("memory://deployflow-test/input.parquet", "wb") as handle:
        df.to_parquet(handle, row_group_size=250)
    out = batch_predict(client, "memory://deployflow-test/input.parquet", deployment_name="linear", chunk_size=100, feature_columns=["a", "b"])
    assert out["id"].tolist() == list(range(700))
    np.testing.assert_allclose(out["prediction"].to_numpy(), expected_linear(df))
    with pytest.raises(InvalidInputError, match="does not exist"):
        batch_predict(client, "memory://deployflow-test/missing.parquet", deployment_name="linear")


def test_switch_interval_is_lowered_during_a_thread_pool_job_and_restored(client):
    before = sys.getswitchinterval()
    seen = []
    pooled = PredictOnlyServingClient(f"serving+{client.get_deployment('linear')['url']}")  # the thread pool
    batch_predict(pooled, frame(400), chunk_size=100, concurrency=2,
                  progress_callback=lambda p: seen.append(sys.getswitchinterval()))
    assert seen and all(value == pytest.approx(0.0002) for value in seen)
    assert sys.getswitchinterval() == before
    seen.clear()
    batch_predict(pooled, frame(400), chunk_size=100, concurrency=2, switch_interval=None,
                  progress_callback=lambda p: seen.append(sys.getswitchinterval()))
    assert seen and all(value == before for value in seen)
    seen.clear()
    # A routed job runs in one thread: the interpreter is left alone.
    batch_predict(client, frame(400), deployment_name="linear", chunk_size=100, concurrency=2,
                  progress_callback=lambda p: seen.append(sys.getswitchinterval()))
    assert seen and all(value == before for value in seen)


def test_a_token_protected_deployment_is_scored_with_the_clients_token(home):
    token = "batch-secret-token-1234"
    with get_deploy_client(f"local://{home}") as owner:
        owner.create_deployment("guarded_linear", model("linear"), config={"auth_token": token})
        try:
            df = frame(900, seed=9)
            with get_deploy_client(f"local://{home}", auth_token=token) as friend:
                route = friend.batch_http_route("guarded_linear")
                assert token not in repr(route)
                out = batch_predict(friend, df, deployment_name="guarded_linear", chunk_size=100, feature_columns=["a", "b"])
            np.testing.assert_allclose(out["prediction"].to_numpy(), expected_linear(df))
            with get_deploy_client(f"local://{home}", auth_token="not-the-token") as stranger:
                with pytest.raises(deployflow.AuthenticationError) as info:
                    batch_predict(stranger, df, deployment_name="guarded_linear", chunk_size=100, feature_columns=["a", "b"])
            assert "rows 0-99" in str(info.value) and token not in str(info.value)
        finally:
            owner.delete_deployment("guarded_linear")


def test_serving_targets_post_chunks_from_the_event_loop_only_when_nothing_else_is_needed(monkeypatch):
    assert get_deploy_client("serving+http://127.0.0.1:9").batch_http_route() is not None
    # TLS settings, credentials in the URL and proxies are the transport's business: use predict.
    assert get_deploy_client("serving+https://127.0.0.1:9").batch_http_route() is None
    assert get_deploy_client("serving+http://user:pw@127.0.0.1:9").batch_http_route() is None
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:3128")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    assert get_deploy_client("serving+http://scoring.example:8080").batch_http_route() is None


@pytest.mark.parametrize("client_max_retries", [0, 2, 5])
@pytest.mark.parametrize("path", ["event loop", "thread pool"])
def test_a_chunk_that_keeps_failing_stops_the_job_after_bounded_retries(client, path, client_max_retries):
    df = frame(300, seed=10)
    upstream = client.get_deployment("linear")["url"]
    with FaultProxy(upstream, every={1: "503"}) as proxy:
        options = {"backoff_factor": 0.01, "backoff_max": 0.02, "max_retries": client_max_retries}
        remote = (get_deploy_client if path == "event loop" else PredictOnlyServingClient)(f"serving+{proxy.url}", **options)
        with pytest.raises(deployflow.TransientError) as info:
            batch_predict(remote, df, deployment_name="linear", chunk_size=300, max_chunk_retries=2, retry_backoff=0.01)
    assert "rows 0-299" in str(info.value) and "503" in str(info.value)
    # One budget per chunk, whatever the client's own max_retries: 1 + max_chunk_retries POSTs.
    assert proxy.requests == 1 + 2
    assert proxy.forwarded == 0


def test_a_read_timeout_stops_the_job_with_the_row_range_when_chunk_retries_are_off(client, home):
    df = frame(200, seed=11)
    with get_deploy_client(f"local://{home}", predict_timeout=0.01) as impatient:
        with pytest.raises(deployflow.RequestTimeoutError) as info:
            batch_predict(impatient, df, deployment_name="slow_linear", chunk_size=100, max_chunk_retries=0, feature_columns=["a", "b"])
    assert "rows 0-99" in str(info.value) and "read timeout" in str(info.value)


def test_a_wrong_number_of_predictions_is_reported_as_such_on_both_paths(client, tmp_path):
    client.create_deployment("short", model("short"))
    try:
        url = client.get_deployment("short")["url"]
        for remote in (client, PredictOnlyServingClient(f"serving+{url}")):
            with pytest.raises(InvalidInputError, match="returned 99 predictions for the 100 input rows 0-99") as info:
                batch_predict(remote, frame(300), deployment_name="short", chunk_size=100, feature_columns=["a", "b"], on_bad_rows="isolate", errors_path=tmp_path / "bad.jsonl")
            assert not isinstance(info.value, BadRowsError)
    finally:
        client.delete_deployment("short")


def test_scoring_through_an_endpoint_router(client):
    client.create_endpoint("batch-front", config={"routes": [{"deployment": "linear", "traffic": 100}]})
    try:
        df = frame(1500, seed=12)
        route = client.batch_http_route(endpoint="batch-front")
        assert route.url.endswith("/invocations") and route.url != client.get_deployment("linear")["url"] + "/invocations"
        out = batch_predict(client, df, endpoint="batch-front", chunk_size=200, feature_columns=["a", "b"])
        np.testing.assert_allclose(out["prediction"].to_numpy(), expected_linear(df))
        assert out.attrs["deployflow_summary"]["chunks"] == 8
    finally:
        client.delete_endpoint("batch-front")


def test_a_deployment_updated_mid_job_is_followed_to_its_new_server(client):
    client.create_deployment("moving", model("slow_linear"))
    try:
        old_url = client.get_deployment("moving")["url"]
        df = frame(3000, seed=13)
        started_update = threading.Event()
        updated = threading.Event()

        def update_when_asked():
            started_update.wait(30)
            client.update_deployment("moving", model("linear"))
            updated.set()

        updater = threading.Thread(target=update_when_asked)
        updater.start()

        def on_progress(progress):
            if progress.chunks_done == 3:
                started_update.set()
            if progress.chunks_done == 5:
                assert updated.wait(60)  # the rest of the job runs against the new server

        out = batch_predict(
            client, df, deployment_name="moving", chunk_size=100, concurrency=2, feature_columns=["a", "b"],
            progress_callback=on_progress,
        )
        updater.join()
        assert client.get_deployment("moving")["url"] != old_url
        np.testing.assert_allclose(out["prediction"].to_numpy(), expected_linear(df))
        assert out.attrs["deployflow_summary"]["rows"] == 3000
    finally:
        client.delete_deployment("moving")


@pytest.mark.parametrize("path", ["event loop", "thread pool"])
def test_a_timed_out_chunk_is_not_sent_again(client, path):
    # Read timeouts are not retried unless retry_on_timeout is set: not by the transport, not by the chunk.
    df = frame(100, seed=12)
    upstream = client.get_deployment("linear")["url"]
    with FaultProxy(upstream, every={1: "slow"}, slow_seconds=1.0) as proxy:
        options = {"predict_timeout": 0.2, "backoff_factor": 0.01}
        remote = (get_deploy_client if path == "event loop" else PredictOnlyServingClient)(f"serving+{proxy.url}", **options)
        with pytest.raises(deployflow.RequestTimeoutError) as info:
            batch_predict(remote, df, deployment_name="linear", chunk_size=100, max_chunk_retries=3, retry_backoff=0.01)
    assert "rows 0-99" in str(info.value)
    assert proxy.requests == 1


WHOLE_OR_NOT = '''
def whole_or_not(data):
    """2a + b; rounded to integers for a chunk whose first b is even: one job, answers of two dtypes."""
    values = (data["a"] * 2 + data["b"]).to_numpy()
    return values.round().astype("int64") if int(data["b"].iloc[0]) % 2 == 0 else values
'''


def test_a_dataframe_result_is_the_same_whichever_way_its_chunks_were_held(client, tmp_path):
    # A DataFrame input's chunks scored in full as numbers keep only their predictions until the end
    # (fewer objects for the garbage collector); the result must be what joining each chunk's rows and
    # predictions gives, whether the answers share one dtype or not, with and without rejected rows.
    (tmp_path / "whole_or_not.py").write_text(WHOLE_OR_NOT)
    client.create_deployment("whole_or_not", f"python:{tmp_path / 'whole_or_not.py'}:whole_or_not")
    try:
        df = frame(2300, seed=21)
        df.index = df.index * 3 + 7  # a user's index
        df["note"] = np.where(df["id"] % 3 == 0, "x", None)

        def expected(answer, features, kept, skip=()):
            parts = []
            for start in range(0, len(df), 200):
                chunk = df.iloc[start : start + 200]
                chunk = chunk[~chunk["id"].isin(skip)]
                parts.append(chunk[kept].assign(prediction=answer(chunk[features])))
            return pd.concat(parts)

        def whole_or_not(data):
            values = (data["a"] * 2 + data["b"]).to_numpy()
            return values.round().astype("int64") if int(data["b"].iloc[0]) % 2 == 0 else values

        everything = ["id", "a", "b", "note"]
        out = batch_predict(client, df, deployment_name="whole_or_not", chunk_size=200, concurrency=3)
        pd.testing.assert_frame_equal(out, expected(whole_or_not, everything, everything))
        out = batch_predict(client, df, deployment_name="whole_or_not", chunk_size=200, concurrency=3,
                            feature_columns=["a", "b"], keep_columns=["note", "id"])
        pd.testing.assert_frame_equal(out, expected(whole_or_not, ["a", "b"], ["note", "id"]))
        out = batch_predict(client, df, deployment_name="linear", chunk_size=200, concurrency=3,
                            feature_columns=["a", "b"], keep_columns=["id"])
        pd.testing.assert_frame_equal(out, expected(expected_linear, ["a", "b"], ["id"]))
        bad = [5, 1999, 2000]
        picky_input = df.copy()
        picky_input.loc[picky_input["id"].isin(bad), "a"] = -1.0
        df = picky_input
        out = batch_predict(client, df, deployment_name="picky", chunk_size=200, concurrency=3, on_bad_rows="isolate",
                            feature_columns=["a", "b"], errors_path=tmp_path / "errors.jsonl")
        pd.testing.assert_frame_equal(out, expected(expected_linear, ["a", "b"], everything, skip=bad))
    finally:
        client.delete_deployment("whole_or_not")


class _CountingScorer(threading.Thread):
    """An MLflow-protocol server on 127.0.0.1 (in a thread per request) that answers 2a + b after a
    pause, counting the requests it holds at once; ``fail_at`` answers that request with a 400."""

    def __init__(self, fail_at: int | None = None) -> None:
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        super().__init__(daemon=True)
        self.lock = threading.Lock()
        self.holding = self.most = self.requests = 0
        counter = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with counter.lock:
                    counter.requests += 1
                    number = counter.requests
                    counter.holding += 1
                    counter.most = max(counter.most, counter.holding)
                time.sleep(0.01)  # long enough for the client to have its other chunks under way
                with counter.lock:
                    counter.holding -= 1
                if number == fail_at:
                    answer, status = b'{"error_code": "BAD_REQUEST", "message": "no"}', 400
                else:
                    rows = body["dataframe_split"]["data"]
                    answer, status = json.dumps({"predictions": [2 * a + b for _, a, b in rows]}).encode(), 200
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def run(self):
        self.server.serve_forever()

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc_info):
        self.server.shutdown()
        self.server.server_close()


@pytest.mark.parametrize("concurrency", [1, 3])
def test_the_event_loop_path_holds_at_most_concurrency_requests_at_once(concurrency, recwarn):
    # Twice as many chunks are encoded as may be sent; the others wait their turn on our side.
    df = frame(1000, seed=23)
    with _CountingScorer() as server:
        out = batch_predict(f"serving+{server.url}", df, chunk_size=50, concurrency=concurrency)
        np.testing.assert_allclose(out["prediction"].to_numpy(), expected_linear(df))
        assert server.requests == 20 and 1 <= server.most <= concurrency
    with _CountingScorer(fail_at=4) as server:
        with pytest.raises(BadRowsError):
            batch_predict(f"serving+{server.url}", df, chunk_size=50, concurrency=concurrency)
        assert server.most <= concurrency
    # The chunks still waiting for their turn when the job stopped were dropped without a trace.
    assert not [w for w in recwarn if "never awaited" in str(w.message)]


def test_a_routed_job_runs_in_the_calling_thread(client):
    # The pipeline's event loop is the caller's thread's: callbacks see that thread, no other one runs.
    callers, helpers = set(), set()

    def seen(progress):
        callers.add(threading.current_thread())
        helpers.update(t.name for t in threading.enumerate() if t.name.startswith("deployflow-batch"))

    out = batch_predict(client, frame(900), deployment_name="linear", chunk_size=100, concurrency=3,
                        progress_callback=seen)
    np.testing.assert_allclose(out["prediction"].to_numpy(), expected_linear(frame(900)))
    assert callers == {threading.current_thread()} and helpers == set()


def _answered_posts(url: str) -> float:
    return value(scrape(url)["deployflow_requests"], path="/invocations")


def test_a_progress_callback_longer_than_the_read_timeout_loses_no_answer_and_sends_nothing_twice(client, home):
    # While the callback holds the job's thread, the event loop does not run: the answers of the chunks
    # in flight wait in their sockets. When the loop runs again they must be read, not timed out first
    # (and, for a target whose requests are not safe to repeat, failed; here: sent again).
    df = frame(800, seed=17)
    with get_deploy_client(f"local://{home}", predict_timeout=2.0) as impatient:
        url = impatient.get_deployment("linear")["url"]
        before = _answered_posts(url)
        paused = []

        def away(progress):
            if not paused:
                paused.append(progress.rows_done)
                time.sleep(4.5)  # over twice the read timeout, with the next chunks answered meanwhile

        out = batch_predict(impatient, df, deployment_name="linear", chunk_size=100, concurrency=4,
                            progress_callback=away)
    np.testing.assert_allclose(out["prediction"].to_numpy(), expected_linear(df))
    assert paused == [100]
    assert _answered_posts(url) - before == 8  # one POST per chunk


def test_a_caller_that_runs_an_event_loop_gets_the_job_run_beside_it(client):
    # A notebook's thread runs a loop, which cannot run the job's: the job gets a thread of its own.
    import asyncio

    async def inside_a_loop():
        seen = []
        out = batch_predict(client, frame(700), deployment_name="linear", chunk_size=100, concurrency=2,
                            progress_callback=lambda p: seen.append(threading.current_thread()))
        return out, seen

    out, seen = asyncio.run(inside_a_loop())
    np.testing.assert_allclose(out["prediction"].to_numpy(), expected_linear(frame(700)))
    assert len(seen) == 7 and threading.current_thread() not in seen
    with pytest.raises(BadRowsError, match="rows 0-99"):
        asyncio.run(_score_picky_inside_a_loop(client))


async def _score_picky_inside_a_loop(client):
    df = frame(300)
    df["a"] = -1.0  # every row rejected: the job's error reaches the caller from the job's thread
    return batch_predict(client, df, deployment_name="picky", chunk_size=100, concurrency=2)


def test_no_full_collection_starts_during_a_job_and_the_thresholds_come_back(client):
    import gc

    before = gc.get_threshold()
    seen = []
    batch_predict(client, frame(400), deployment_name="linear", chunk_size=100, concurrency=2,
                  progress_callback=lambda p: seen.append(gc.get_threshold()))
    assert seen and all(value[:2] == before[:2] and value[2] >= 1 << 30 for value in seen)
    assert gc.get_threshold() == before
    with pytest.raises(BadRowsError):  # a failed job restores them too
        batch_predict(client, frame(300).assign(a=-1.0), deployment_name="picky", chunk_size=100)
    assert gc.get_threshold() == before


def test_a_job_stopped_by_failures_in_flight_leaves_no_lost_errors_behind(client, caplog):
    # Several chunks fail while the job waits for the first: the job stops with the first one, and
    # the others' errors are dropped quietly (asyncio logs errors nobody read when they are collected).
    import gc
    import logging

    df = frame(1200).assign(a=-1.0)
    with caplog.at_level(logging.ERROR, logger="asyncio"):
        for _ in range(3):
            with pytest.raises(BadRowsError, match="rows 0-99"):
                batch_predict(client, df, deployment_name="picky", chunk_size=100, concurrency=4)
        gc.collect()
    assert [r for r in caplog.records if r.name == "asyncio"] == []
