"""The sagemaker target's lifecycle against moto in this process (tests/fakes/sagemaker.py adds what moto
lacks: status sequences, UpdateEndpoint, rollbacks): create, adopt, update (replace, add, canary), a
rolled-back update, delete, list, get."""

from __future__ import annotations

import io
import json
import sys
import tarfile
import time

import pytest

import deployflow
from deployflow import (
    ConflictError,
    DeploymentFailedError,
    InvalidInputError,
    MissingExtraError,
    NotFoundError,
    State,
    WaitTimeoutError,
    ensure_deployment,
    get_deploy_client,
)
from fakes import sagemaker as fakes
from fakes.sagemaker import BASE_CONFIG, FAST, IMAGE, ROLE, write_model

BUCKET = "mlflow-sagemaker-us-east-1-123456789012"
CANARY = {"strategy": "canary", "canary_size": "10%", "wait_seconds": 60, "alarms": ["errors-5xx"]}


@pytest.fixture
def fake():
    with fakes.in_process() as running:
        yield running


@pytest.fixture
def client(fake):
    with get_deploy_client("sagemaker:/us-east-1", **FAST) as made:
        yield made


@pytest.fixture
def model(tmp_path):
    return str(write_model(tmp_path / "model-v1"))


@pytest.fixture
def model_v2(tmp_path):
    return str(write_model(tmp_path / "model-v2", marker="v2"))


def _no_secrets(*texts):
    for text in texts:
        assert fakes.SECRET_KEY not in str(text) and fakes.ACCESS_KEY not in str(text)


# --------------------------------------------------------------------------------------------------
# create
# --------------------------------------------------------------------------------------------------


def test_create_packages_uploads_and_waits_until_in_service(client, fake, model):
    fake.script("churn", "Creating", "Creating", "InService")

    record = client.create_deployment("churn", model, config={**BASE_CONFIG, "tags": {"team": "risk"}, "env": {"WORKERS": 2}})

    assert record["state"] == "READY" and record["status"] == "InService"
    assert json.loads(json.dumps(record)) == record  # small and JSON-safe
    backend = fake.backend()
    (model_name,) = backend._models
    assert model_name.startswith("churn-model-") and len(model_name) == len("churn-model-") + 20
    container = backend._models[model_name].primary_container
    assert container["Image"] == IMAGE and backend._models[model_name].execution_role_arn == ROLE
    assert container["Environment"] == {"MLFLOW_DEPLOYMENT_FLAVOR_NAME": "python_function",
                                        "SERVING_ENVIRONMENT": "SageMaker", "WORKERS": "2"}
    assert container["ModelDataUrl"] == f"s3://{BUCKET}/{model_name}/model.tar.gz"
    assert fake.buckets() == [BUCKET]  # MLflow's default bucket, made because it was missing
    from moto.s3.models import s3_backends

    key = s3_backends[fakes.ACCOUNT]["aws"].buckets[BUCKET].keys[f"{model_name}/model.tar.gz"]
    with tarfile.open(fileobj=io.BytesIO(key.value)) as archive:
        assert sorted(archive.getnames()) == ["MLmodel", "python_env.yaml", "python_model.pkl"]
    import boto3

    s3 = boto3.client("s3", region_name="us-east-1", aws_access_key_id=fakes.ACCESS_KEY, aws_secret_access_key=fakes.SECRET_KEY)
    tagging = s3.get_object_tagging(Bucket=BUCKET, Key=f"{model_name}/model.tar.gz")["TagSet"]
    assert tagging == [{"Key": "SageMaker", "Value": "true"}]  # what SageMaker's managed policies may read
    model_tags = {t["Key"]: t["Value"] for t in backend._models[model_name].tags}
    assert model_tags["model_uri"] == model and model_tags["team"] == "risk"
    (config_name,) = backend.endpoint_configs
    assert record["endpoint_config_name"] == config_name and config_name.startswith("churn-config-")
    assert backend.endpoint_configs[config_name].tags == [{"Key": "app_name", "Value": "churn"}]
    (variant,) = backend.endpoint_configs[config_name].production_variants
    assert (variant["InstanceType"], variant["InitialInstanceCount"], variant["VariantName"]) == ("ml.m4.xlarge", 1, model_name)
    assert record["model_uri"] == model and record["flavor"] == "python_function"
    assert record["variants"][0]["traffic_percentage"] == 100.0
    assert record["config"]["tags"] == {"team": "risk"} and record["created"].startswith("20")
    endpoint_tags = {t["Key"]: t["Value"] for t in backend.endpoints["churn"].tags}
    assert endpoint_tags == {"team": "risk", "app_name": "churn", "deployflow:endpoint-config": config_name}
    assert record["url"] == "https://runtime.sagemaker.us-east-1.amazonaws.com/endpoints/churn/invocations"


def test_a_failed_start_raises_at_once_with_sagemakers_reason(client, fake, model):
    reason = "The primary container for production variant churn did not pass the ping health check."
    fake.script("churn", "Creating", ("Failed", reason))
    started = time.monotonic()

    with pytest.raises(DeploymentFailedError) as caught:
        client.create_deployment("churn", model, config={**BASE_CONFIG, "timeout_seconds": 60})

    assert time.monotonic() - started < 5
    assert caught.value.reason == reason and reason in str(caught.value)
    assert client.deployment_status("churn").state is State.FAILED


def test_waiting_has_one_deadline(client, fake, model):
    client.create_deployment("warm-up", model, config=BASE_CONFIG)  # boto3's clients and the bucket exist now
    fake.script("churn", *["Creating"] * 10_000)
    started = time.monotonic()

    with pytest.raises(WaitTimeoutError, match="last state: PENDING \\(Creating\\)"):
        client.create_deployment("churn", model, config={**BASE_CONFIG, "timeout_seconds": "2.5"})

    assert 2.4 < time.monotonic() - started < 6


def test_without_waiting_the_create_returns_pending(client, fake, model):
    fake.script("churn", "Creating", "Creating", "InService")

    record = client.create_deployment("churn", model, config={**BASE_CONFIG, "synchronous": "false"})

    assert record["state"] == "PENDING" and record["reason"] == "Creating"
    assert client.wait_for_deployment("churn", timeout=10, poll_interval=0.01).state is State.READY


def test_a_second_create_is_a_conflict_and_mode_replace_updates(client, fake, model, model_v2):
    client.create_deployment("churn", model, config=BASE_CONFIG)

    with pytest.raises(ConflictError, match="exists already"):
        client.create_deployment("churn", model, config=BASE_CONFIG)
    record = client.create_deployment("churn", model_v2, config={**BASE_CONFIG, "mode": "replace"})

    assert record["model_uri"] == model_v2 and len(fake.updates) == 1


def test_retried_creates_adopt_the_same_model_and_refuse_another(client, fake, model, model_v2):
    first = ensure_deployment(client, "churn", model, config=BASE_CONFIG)
    again = ensure_deployment(client, "churn", model, config=BASE_CONFIG)

    assert (first.action, again.action) == ("created", "adopted")
    with pytest.raises(ConflictError, match="different spec.*model_uri"):
        ensure_deployment(client, "churn", model_v2, config=BASE_CONFIG)
    with pytest.raises(ConflictError, match="instance_type"):
        ensure_deployment(client, "churn", model, config={**BASE_CONFIG, "instance_type": "ml.m5.large"})
    updated = ensure_deployment(client, "churn", model_v2, config=BASE_CONFIG, if_exists="update")
    assert updated.action == "updated" and updated.record["model_uri"] == model_v2
    assert len(fake.backend()._models) == 1  # the replaced model went once the update settled


def test_a_failed_deployment_is_created_again_by_a_retried_step(client, fake, model):
    fake.script("churn", ("Failed", "image not found"))
    with pytest.raises(DeploymentFailedError):
        client.create_deployment("churn", model, config=BASE_CONFIG)

    result = ensure_deployment(client, "churn", model, config=BASE_CONFIG)

    assert result.action == "updated" and result.record["state"] == "READY"
    assert len(fake.backend()._models) == 1 and len(fake.backend().endpoint_configs) == 1


@pytest.mark.parametrize(
    "config, message",
    [
        ({"execution_role_arn": ROLE}, "No serving image.*MLFLOW_SAGEMAKER_DEPLOY_IMG_URL.*build-and-push-container"),
        ({**BASE_CONFIG, "bucket_name": "b"}, "Unknown config key.*bucket_name.*did you mean 'bucket'"),
        ({**BASE_CONFIG, "assume_role_arn": "arn:aws:iam::123456789012:role/other"}, "not this client's role"),
    ],
)
def test_bad_requests_create_nothing(client, fake, model, config, message):
    with pytest.raises(InvalidInputError, match=message):
        client.create_deployment("churn", model, config=config)
    assert not fake.backend()._models and not fake.buckets()


def test_models_are_checked_before_anything_is_created(client, fake, tmp_path):
    with pytest.raises(InvalidInputError, match="no MLmodel file"):
        client.create_deployment("churn", str(tmp_path), config=BASE_CONFIG)
    sklearn_only = write_model(tmp_path / "sk", flavors=("sklearn",))
    with pytest.raises(InvalidInputError, match="no 'python_function' flavor"):
        client.create_deployment("churn", str(sklearn_only), config=BASE_CONFIG)
    with pytest.raises(MissingExtraError, match=r"pip install 'deployflow\[mlflow\]'"):
        client.create_deployment("churn", "runs:/0123456789abcdef/model", config=BASE_CONFIG)
    with pytest.raises(InvalidInputError, match="endpoint name"):
        client.create_deployment("bad_name", str(sklearn_only), config=BASE_CONFIG)
    assert not fake.backend()._models and not fake.buckets() and not fake.backend().endpoints


def test_the_image_comes_from_mlflows_environment_variable_and_proxies_reach_the_container(client, fake, model, monkeypatch):
    monkeypatch.setenv("MLFLOW_SAGEMAKER_DEPLOY_IMG_URL", "111111111111.dkr.ecr.us-east-1.amazonaws.com/mlflow-pyfunc:3.1.0")
    monkeypatch.setenv("no_proxy", "169.254.169.254,.internal")

    record = client.create_deployment("churn", model, config={"execution_role_arn": ROLE})

    assert record["config"]["image_url"].endswith("mlflow-pyfunc:3.1.0")
    assert record["config"]["env"]["no_proxy"] == "169.254.169.254,.internal"


def test_mlflow_model_uris_are_downloaded_with_mlflow(client, fake, model, monkeypatch):
    import shutil
    import types

    asked = []

    def download_artifacts(artifact_uri, dst_path):  # what mlflow.artifacts.download_artifacts does
        asked.append(artifact_uri)
        return shutil.copytree(model, f"{dst_path}/model")

    mlflow = types.ModuleType("mlflow")
    mlflow.artifacts = types.SimpleNamespace(download_artifacts=download_artifacts)
    monkeypatch.setitem(sys.modules, "mlflow", mlflow)
    monkeypatch.setitem(sys.modules, "mlflow.artifacts", mlflow.artifacts)

    record = client.create_deployment("churn", "models:/churn@champion", config=BASE_CONFIG)

    assert asked == ["models:/churn@champion"] and record["model_uri"] == "models:/churn@champion"


def test_an_s3_model_uri_is_downloaded_and_a_given_bucket_is_used(client, fake, model):
    import boto3

    s3 = boto3.client("s3", region_name="us-east-1", aws_access_key_id=fakes.ACCESS_KEY, aws_secret_access_key=fakes.SECRET_KEY)
    s3.create_bucket(Bucket="models")
    for name in ("MLmodel", "python_env.yaml", "python_model.pkl"):
        s3.upload_file(f"{model}/{name}", "models", f"churn/v1/{name}")

    record = client.create_deployment("churn", "s3://models/churn/v1", config={**BASE_CONFIG, "bucket": "models"})

    assert record["model_uri"] == "s3://models/churn/v1"
    assert any(key.endswith("/model.tar.gz") for key in fake.s3_keys("models")) and fake.buckets() == ["models"]
    with pytest.raises(NotFoundError, match="Nothing is stored under"):
        client.create_deployment("other", "s3://models/nothing-here", config={**BASE_CONFIG, "bucket": "models"})


def test_the_execution_role_defaults_to_the_assumed_role_of_the_uri(fake, model):
    uri = "sagemaker:/us-east-1/arn:aws:iam::123456789012:role/deployer"
    with get_deploy_client(uri, **FAST) as client:
        record = client.create_deployment("churn", model, config={"image_url": IMAGE})

    assert record["config"]["execution_role_arn"] == "arn:aws:iam::123456789012:role/deployer"
    credentials = client._aws.session().get_credentials()
    assert credentials.method == "assume-role" and callable(credentials.refresh_needed)  # refreshed before expiry
    from moto.sts.models import sts_backends

    assumed = sts_backends[fakes.ACCOUNT]["global"].assumed_roles
    assert [role.role_arn for role in assumed] == ["arn:aws:iam::123456789012:role/deployer"]


def test_a_user_caller_needs_execution_role_arn(client, fake, model):
    with pytest.raises(InvalidInputError, match="execution_role_arn' is needed.*user/moto"):
        client.create_deployment("churn", model, config={"image_url": IMAGE})


def test_a_config_region_deploys_there(client, fake, model):
    record = client.create_deployment("churn", model, config={**BASE_CONFIG, "region_name": "eu-west-1"})

    assert record["region"] == "eu-west-1" and "churn" in fake.backend("eu-west-1").endpoints
    assert "churn" not in fake.backend().endpoints
    assert fake.buckets() == ["mlflow-sagemaker-eu-west-1-123456789012"]
    client.delete_deployment("churn", config={"region_name": "eu-west-1"})
    assert not fake.backend("eu-west-1").endpoints


# --------------------------------------------------------------------------------------------------
# update
# --------------------------------------------------------------------------------------------------


def test_replace_deletes_the_old_config_and_model_only_once_settled(client, fake, model, model_v2):
    first = client.create_deployment("churn", model, config=BASE_CONFIG)
    old_model = first["variants"][0]["model_name"]
    fake.plan_update("churn", "Updating", "Updating")

    record = client.update_deployment("churn", model_v2, config=BASE_CONFIG)

    assert record["state"] == "READY" and record["model_uri"] == model_v2
    backend = fake.backend()
    assert list(backend.endpoint_configs) == [record["endpoint_config_name"]]
    assert list(backend._models) == [record["variants"][0]["model_name"]] and old_model not in backend._models
    assert fake.s3_keys(BUCKET) == [f"{record['variants'][0]['model_name']}/model.tar.gz"]


def test_archive_keeps_what_was_replaced(client, fake, model, model_v2):
    client.create_deployment("churn", model, config=BASE_CONFIG)

    client.update_deployment("churn", model_v2, config={**BASE_CONFIG, "archive": "true"})

    assert len(fake.backend().endpoint_configs) == 2 and len(fake.backend()._models) == 2


def test_add_mode_shifts_the_asked_share_of_traffic(client, fake, model, model_v2):
    client.create_deployment("churn", model, config={**BASE_CONFIG, "variant_name": "blue"})

    record = client.update_deployment(
        "churn", model_v2, config={**BASE_CONFIG, "mode": "add", "variant_name": "green", "traffic_percentage": "25"}
    )

    shares = {row["name"]: row["traffic_percentage"] for row in record["variants"]}
    assert shares == {"blue": 75.0, "green": 25.0}
    assert record["model_uri"] == model_v2 and len(fake.backend()._models) == 2  # add keeps the old model
    with pytest.raises(ConflictError, match="variant named 'green'"):
        client.update_deployment("churn", model_v2, config={**BASE_CONFIG, "mode": "add", "variant_name": "green"})
    shifted = client.update_traffic("churn", {"blue": 0, "green": 100})
    assert {row["name"]: row["traffic_percentage"] for row in shifted["variants"]} == {"blue": 0.0, "green": 100.0}


def test_add_mode_without_a_share_adds_at_zero_as_mlflow(client, fake, model, model_v2):
    client.create_deployment("churn", model, config=BASE_CONFIG)

    record = client.update_deployment("churn", model_v2, config={**BASE_CONFIG, "mode": "add"})

    assert [row["traffic_percentage"] for row in record["variants"]] == [100.0, 0.0]


def test_a_canary_rollout_sends_deployment_guardrails_and_keeps_the_variant_name(client, fake, model, model_v2):
    client.create_deployment("churn", model, config={**BASE_CONFIG, "variant_name": "live"})
    fake.plan_update("churn", "Updating", "Updating", "Updating")

    record = client.update_deployment("churn", model_v2, config={**BASE_CONFIG, "rollout": CANARY})

    (update,) = fake.updates
    assert update["deployment_config"] == {
        "BlueGreenUpdatePolicy": {"TrafficRoutingConfiguration": {
            "Type": "CANARY", "WaitIntervalInSeconds": 60, "CanarySize": {"Type": "CAPACITY_PERCENT", "Value": 10}}},
        "AutoRollbackConfiguration": {"Alarms": [{"AlarmName": "errors-5xx"}]},
    }
    assert [row["name"] for row in record["variants"]] == ["live"] and record["model_uri"] == model_v2
    assert record["last_deployment_config"]["BlueGreenUpdatePolicy"]["TrafficRoutingConfiguration"]["Type"] == "CANARY"
    with pytest.raises(InvalidInputError, match="keeps the variant's name"):
        client.update_deployment("churn", model, config={**BASE_CONFIG, "rollout": CANARY, "variant_name": "other"})


def test_a_rolled_back_update_is_failed_never_ready_and_keeps_the_old_config(client, fake, model, model_v2):
    first = client.create_deployment("churn", model, config=BASE_CONFIG)
    reason = "Rolled back: CloudWatch alarm errors-5xx went into ALARM during the canary"
    fake.plan_update("churn", "Updating", rollback=reason)

    with pytest.raises(DeploymentFailedError) as caught:
        client.update_deployment("churn", model_v2, config={**BASE_CONFIG, "rollout": CANARY})

    assert "rolled back" in str(caught.value) and reason in str(caught.value)
    status = client.deployment_status("churn")
    assert status.state is State.FAILED and "rolled back" in status.reason
    record = client.get_deployment("churn")
    assert record["endpoint_config_name"] == first["endpoint_config_name"] and record["model_uri"] == model
    backend = fake.backend()
    assert list(backend.endpoint_configs) == [first["endpoint_config_name"]]  # the new, unused one is gone
    assert list(backend._models) == [first["variants"][0]["model_name"]]
    # A retried step rolls forward again, and this time it goes through.
    again = ensure_deployment(client, "churn", model_v2, config=BASE_CONFIG, if_exists="update")
    assert again.record["state"] == "READY" and again.record["model_uri"] == model_v2


def test_an_update_whose_rollback_failed_is_failed_and_nothing_is_deleted(client, fake, model, model_v2):
    client.create_deployment("churn", model, config=BASE_CONFIG)
    fake.plan_update("churn", "Updating", "RollingBack", final=("UpdateRollbackFailed", "instances failed to roll back"))

    with pytest.raises(DeploymentFailedError, match="UpdateRollbackFailed.*instances failed to roll back"):
        client.update_deployment("churn", model_v2, config=BASE_CONFIG)

    assert len(fake.backend().endpoint_configs) == 2 and len(fake.backend()._models) == 2
    # SageMaker takes an update of an endpoint in UpdateRollbackFailed: that is how it is repaired.
    assert client.update_deployment("churn", model_v2, config=BASE_CONFIG)["state"] == "READY"


def test_an_update_waits_for_a_change_already_running(client, fake, model, model_v2):
    client.create_deployment("churn", model, config=BASE_CONFIG)
    fake.script("churn", "Updating", "Updating", "InService")

    record = client.update_deployment("churn", model_v2, config=BASE_CONFIG)

    assert record["state"] == "READY" and len(fake.updates) == 1


def test_update_refusals(client, fake, model):
    with pytest.raises(NotFoundError, match="does not exist"):
        client.update_deployment("nothing", model, config=BASE_CONFIG)
    client.create_deployment("churn", model, config=BASE_CONFIG)
    with pytest.raises(InvalidInputError, match="needs a model_uri"):
        client.update_deployment("churn", config=BASE_CONFIG)
    with pytest.raises(InvalidInputError, match="archive=true"):
        client.update_deployment("churn", model, config={**BASE_CONFIG, "wait": False})
    with pytest.raises(InvalidInputError, match="endpoint of the same name"):
        client.update_deployment("churn", model, config=BASE_CONFIG, endpoint="other")
    assert fake.updates == []


# --------------------------------------------------------------------------------------------------
# delete, list, get
# --------------------------------------------------------------------------------------------------


def test_delete_waits_until_gone_cleans_up_and_is_idempotent(client, fake, model, model_v2):
    client.create_deployment("churn", model, config=BASE_CONFIG)
    client.update_deployment("churn", model_v2, config={**BASE_CONFIG, "mode": "add"})
    fake.linger_on_delete("churn", polls=3)

    assert client.delete_deployment("churn") is None

    backend = fake.backend()
    assert not backend.endpoints and not backend.endpoint_configs and not backend._models
    assert fake.s3_keys(BUCKET) == []
    assert client.delete_deployment("churn") is None  # missing is not an error
    with pytest.raises(NotFoundError):
        client.get_deployment("churn")
    assert client.deployment_status("churn").state is State.NOT_FOUND


def test_delete_with_archive_keeps_configs_models_and_artefacts(client, fake, model):
    client.create_deployment("churn", model, config=BASE_CONFIG)

    client.delete_deployment("churn", config={"archive": "True", "wait": "false"})

    assert not fake.backend().endpoints and fake.backend().endpoint_configs and fake.backend()._models
    assert fake.s3_keys(BUCKET)
    with pytest.raises(InvalidInputError, match="archive=true"):
        client.delete_deployment("churn", config={"synchronous": False})


def test_list_reads_every_page(client, fake, model):
    from moto.sagemaker.models import FakeEndpoint

    backend = fake.backend()
    for number in range(130):  # more than one page of 100
        name = f"endpoint-{number:03d}"
        backend.endpoints[name] = FakeEndpoint(fakes.ACCOUNT, fakes.REGION, name, "some-config", [], {}, [])

    found = client.list_deployments()

    assert len(found) == 130 and {row["name"] for row in found} == set(backend.endpoints)
    assert found[0]["status"] == "InService" and found[0]["created"].startswith("20")
    assert client.list_deployments(endpoint="endpoint-007")[0]["name"] == "endpoint-007"
    assert client.list_deployments(endpoint="missing") == []
    assert json.loads(json.dumps(found)) == found


def test_deployment_status_follows_every_status(client, fake, model):
    client.create_deployment("churn", model, config=BASE_CONFIG)
    fake.script("churn", "SystemUpdating", ("OutOfService", "instances lost"), "InService", "Deleting")

    seen = [client.deployment_status("churn") for _ in range(4)]

    assert [s.state for s in seen] == [State.PENDING, State.FAILED, State.READY, State.FAILED]
    assert "instances lost" in seen[1].reason and "being deleted" in seen[3].reason


def test_errors_carry_no_credentials(client, fake, model):
    errors = []
    for call in (
        lambda: client.update_deployment("missing", model, config=BASE_CONFIG),
        lambda: client.get_deployment("missing"),
        lambda: client.create_deployment("churn", model, config={**BASE_CONFIG, "bucket": "no-such-bucket"}),
    ):
        with pytest.raises(deployflow.DeploymentError) as caught:
            call()
        errors.append(caught.value)
    assert isinstance(errors[2], NotFoundError) and "NoSuchBucket" in str(errors[2])
    _no_secrets(*errors, *(repr(e) for e in errors), client.options, client)
