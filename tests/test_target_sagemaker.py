"""The sagemaker target without a running SageMaker: URIs, options, credentials, config keys, rollouts,
the state of every EndpointStatus, the help text, and the light import. (Lifecycle against moto:
test_target_sagemaker_lifecycle.py; scoring: test_target_sagemaker_predict.py.)"""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
import textwrap

import pytest

import deployflow
from deployflow import (
    AuthenticationError,
    InvalidInputError,
    MissingExtraError,
    NotSupportedError,
    State,
    TargetError,
    get_deploy_client,
    target_help,
)
from deployflow.targets.sagemaker import SageMakerURI, parse_target_uri, status_of
from deployflow.targets.sagemaker.config import (
    DELETE_CONFIG_KEYS,
    DEPLOYMENT_CONFIG_KEYS,
    delete_settings,
    deployment_settings,
)
from deployflow.targets.sagemaker.faults import translate
from deployflow.targets.sagemaker.packaging import choose_flavor, read_flavors, unique_name
from deployflow.targets.sagemaker.records import DESIRED_CONFIG_TAG, PREVIOUS_CONFIG_TAG
from deployflow.targets.sagemaker.rollout import deployment_config
from fakes.sagemaker import ACCESS_KEY, CREDENTIALS, SECRET_KEY, clean_aws_environment, write_model

ROLE = "arn:aws:iam::123456789012:role/deployer"


@pytest.fixture(autouse=True)
def _no_ambient_aws():
    with clean_aws_environment():
        yield


# --------------------------------------------------------------------------------------------------
# URIs and options
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "uri, expected",
    [
        ("sagemaker", SageMakerURI()),
        ("sagemaker:/", SageMakerURI()),
        ("sagemaker:/eu-west-1", SageMakerURI("eu-west-1")),
        ("sagemaker:/us-gov-west-1/", SageMakerURI("us-gov-west-1")),
        (f"sagemaker:/us-east-1/{ROLE}", SageMakerURI("us-east-1", ROLE)),
        (f"sagemaker:/us-east-1///{ROLE}", SageMakerURI("us-east-1", ROLE)),  # MLflow strips the extra slashes
    ],
)
def test_uris_are_read_as_mlflow_reads_them(uri, expected):
    assert parse_target_uri(uri) == expected


@pytest.mark.parametrize(
    "uri, message",
    [
        (f"sagemaker:/{ROLE}", "role without a region"),
        ("sagemaker://us-east-1", "after one slash"),
        ("sagemaker:/US-EAST", "is not an AWS region"),
        ("sagemaker:/us-east-1/not-an-arn", "is not an IAM role ARN"),
    ],
)
def test_malformed_uris_are_target_errors(uri, message):
    with pytest.raises(TargetError, match=message):
        get_deploy_client(uri)


def test_the_region_comes_from_the_uri_the_option_the_chain_or_mlflows_default(monkeypatch):
    assert get_deploy_client("sagemaker:/eu-west-2").region_name == "eu-west-2"
    assert get_deploy_client("sagemaker", region_name="ap-south-1").region_name == "ap-south-1"
    monkeypatch.setenv("AWS_DEFAULT_REGION", "ca-central-1")
    assert get_deploy_client("sagemaker").region_name == "ca-central-1"
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    assert get_deploy_client("sagemaker").region_name == "us-west-2"
    with pytest.raises(InvalidInputError, match="give one"):
        get_deploy_client("sagemaker:/eu-west-2", region_name="eu-west-1")


def test_a_profile_gives_region_and_credentials(tmp_path, monkeypatch):
    config = tmp_path / "config"
    config.write_text("[profile deploy]\nregion = sa-east-1\naws_access_key_id = AKIAPROFILE000000\n"
                      "aws_secret_access_key = profile-secret-0123456789\n")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    client = get_deploy_client("sagemaker", profile_name="deploy")
    assert client.region_name == "sa-east-1"
    with pytest.raises(InvalidInputError, match="could not be found"):
        get_deploy_client("sagemaker", profile_name="nope").region_name


def test_unknown_and_inconsistent_options_are_refused():
    with pytest.raises(InvalidInputError, match="Unknown option.*bucket_name.*known: .*aws_access_key_id"):
        get_deploy_client("sagemaker", bucket_name="x")
    with pytest.raises(InvalidInputError, match="without aws_secret_access_key"):
        get_deploy_client("sagemaker", aws_access_key_id=ACCESS_KEY)
    with pytest.raises(InvalidInputError, match="not both"):
        get_deploy_client("sagemaker", profile_name="p", **CREDENTIALS)
    with pytest.raises(InvalidInputError, match="endpoint_url"):
        get_deploy_client("sagemaker", endpoint_url="localhost:5000")
    with pytest.raises(InvalidInputError, match="unknown service"):
        get_deploy_client("sagemaker", endpoint_url={"ec2": "http://127.0.0.1:1"})
    with pytest.raises(InvalidInputError, match="assume_role_arn"):
        get_deploy_client("sagemaker", assume_role_arn="deployer")


def test_secrets_are_masked_in_options_repr_and_pickles_keep_working():
    client = get_deploy_client("sagemaker:/us-east-1", aws_session_token="session-token-0123456789", **CREDENTIALS)
    shown = repr(client.options) + repr(client) + str(client.options)
    for secret in (SECRET_KEY, ACCESS_KEY, "session-token-0123456789"):
        assert secret not in shown
        assert secret not in deployflow.redaction.redact(f"leaked {secret}")
    copy = pickle.loads(pickle.dumps(client))
    assert copy.region_name == "us-east-1" and copy.options == client.options


def test_no_credentials_anywhere_is_an_authentication_error_saying_where_to_put_them():
    client = get_deploy_client("sagemaker:/us-east-1", endpoint_url="http://127.0.0.1:9")
    with pytest.raises(AuthenticationError) as caught:
        client.list_deployments()
    message = str(caught.value)
    assert "no usable AWS credentials" in message and "aws_access_key_id" in message and "AWS_PROFILE" in message


def test_credentials_from_the_environment_are_registered_for_redaction(monkeypatch):
    secret = "env-secret-" + "7f3a9c2e51d04b68"
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAENVIRONMENT0001")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret)
    client = get_deploy_client("sagemaker:/us-east-1", endpoint_url="http://127.0.0.1:9", max_retries=0, connect_timeout=2)

    with pytest.raises(deployflow.TransientError, match="could not connect") as caught:
        client.list_deployments()

    assert caught.value.retryable
    assert deployflow.redaction.redact(f"x {secret} y") == "x *** y"


def test_a_role_in_the_uri_without_any_credentials_to_assume_it_with():
    client = get_deploy_client(f"sagemaker:/us-east-1/{ROLE}", endpoint_url="http://127.0.0.1:9")
    with pytest.raises(AuthenticationError, match=f"Assuming role {ROLE}"):
        client.get_deployment("x")


def test_importing_deployflow_and_making_a_client_load_no_boto3():
    code = textwrap.dedent(
        """
        import sys, deployflow
        before = "boto3" in sys.modules or "botocore" in sys.modules
        deployflow.get_deploy_client("local")
        client = deployflow.get_deploy_client("sagemaker:/us-east-1")
        deployflow.target_help("sagemaker")
        print(before, "boto3" in sys.modules or "botocore" in sys.modules)
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_without_boto3_the_client_names_the_pip_command(tmp_path):
    code = textwrap.dedent(
        """
        import json, sys

        class Hide:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in ("boto3", "botocore"):
                    raise ModuleNotFoundError(f"No module named {name!r}", name=name)

        sys.meta_path.insert(0, Hide())
        import deployflow
        try:
            deployflow.get_deploy_client("sagemaker")
        except Exception as exc:
            print(json.dumps([type(exc).__name__, str(exc), getattr(exc, "extra", None), isinstance(exc, ImportError)]))
        print(json.dumps(deployflow.target_help("sagemaker")[:18]))
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=tmp_path)
    failure, help_start = (json.loads(line) for line in out.stdout.splitlines())
    assert failure == [
        "MissingExtraError",
        "the 'sagemaker' target needs the 'sagemaker' extra: pip install 'deployflow[sagemaker]' (missing module: boto3)",
        "sagemaker",
        True,
    ]
    assert help_start == "Target 'sagemaker'"
    assert issubclass(MissingExtraError, ImportError)


def test_the_target_is_listed_and_helps():
    assert "sagemaker" in deployflow.list_targets()
    text = target_help("sagemaker")
    for key in [*DEPLOYMENT_CONFIG_KEYS, *DELETE_CONFIG_KEYS, "canary_size", "step_size", "batch_size", "alarms"]:
        assert key in text, key
    for word in ("sagemaker:/REGION/ROLE_ARN", "endpoint_url", "profile_name", "UpdateRollbackFailed", "RollingBack",
                 "rolled back", "MLFLOW_SAGEMAKER_DEPLOY_IMG_URL", "Docker"):
        assert word in text, word


def test_run_local_points_to_the_local_target():
    with pytest.raises(NotSupportedError, match="needs Docker.*'local' target"):
        deployflow.run_local("sagemaker", "churn", "/models/churn")


def test_endpoint_methods_are_not_offered_but_endpoint_status_is_the_deployments():
    client = get_deploy_client("sagemaker:/us-east-1", **CREDENTIALS)
    with pytest.raises(NotSupportedError):
        client.create_endpoint("e")
    with pytest.raises(NotSupportedError):
        client.list_endpoints()


# --------------------------------------------------------------------------------------------------
# Config keys
# --------------------------------------------------------------------------------------------------


def test_mlflows_defaults():
    settings = deployment_settings(None, operation="create")
    assert (settings.mode, settings.instance_type, settings.instance_count, settings.archive) == ("create", "ml.m4.xlarge", 1, False)
    assert (settings.synchronous, settings.timeout_seconds) == (True, 1200.0)
    assert deployment_settings({}, operation="update").mode == "replace"
    assert delete_settings(None).timeout_seconds == 300.0


@pytest.mark.parametrize("word, value", [("true", True), ("True", True), ("1", True), ("yes", True), ("false", False),
                                          ("False", False), ("0", False), ("off", False), (True, True)])
def test_booleans_from_cli_strings(word, value):
    settings = deployment_settings({"synchronous": word, "archive": word}, operation="create")
    assert settings.synchronous is value and settings.archive is value


def test_cli_strings_become_numbers_and_dicts():
    settings = deployment_settings(
        {"instance_count": "3", "timeout_seconds": "60", "env": '{"GUNICORN_CMD_ARGS": "--timeout 60", "WORKERS": 2, "X": true}',
         "tags": '{"team": "risk"}', "vpc_config": '{"Subnets": ["subnet-1"], "SecurityGroupIds": ["sg-1"]}',
         "bucket": "", "variant_name": None},
        operation="create",
    )
    assert settings.instance_count == 3 and settings.timeout_seconds == 60.0
    assert settings.env == {"GUNICORN_CMD_ARGS": "--timeout 60", "WORKERS": "2", "X": "true"}
    assert settings.tags == {"team": "risk"} and settings.vpc_config["Subnets"] == ["subnet-1"]
    assert settings.bucket is None and settings.variant_name is None  # empty means "not given"


def test_unknown_keys_are_refused_with_the_known_ones_and_a_hint():
    with pytest.raises(InvalidInputError) as caught:
        deployment_settings({"bucket_name": "my-bucket", "instance_typ": "ml.m5.large"}, operation="create")
    message = str(caught.value)
    assert "bucket_name, instance_typ" in message
    assert "did you mean 'bucket'?" in message and "did you mean 'instance_type'?" in message
    assert "Known keys: archive, assume_role_arn, async_inference_config, bucket" in message
    with pytest.raises(InvalidInputError, match="Unknown config key.*instance_type"):
        delete_settings({"instance_type": "ml.m5.large"})


@pytest.mark.parametrize(
    "config, operation, message",
    [
        ({"synchronous": "maybe"}, "create", "synchronous' must be true or false"),
        ({"instance_count": "0"}, "create", "instance_count' must be an integer >= 1"),
        ({"instance_count": "two"}, "create", "instance_count"),
        ({"timeout_seconds": "-1"}, "create", "timeout_seconds"),
        ({"env": "{not json"}, "create", "must be a dict or a JSON object"),
        ({"env": {"A": [1]}}, "create", "must be a string, number or boolean"),
        ({"tags": {"app_name": "x"}}, "create", "set by the client itself"),
        ({"tags": {"deployflow:x": "y"}}, "create", "set by the client itself"),
        ({"mode": "upsert"}, "create", "must be one of create, add, replace"),
        ({"mode": "create"}, "update", "cannot update an existing deployment"),
        ({"traffic_percentage": 10}, "update", "applies to mode 'add'"),
        ({"mode": "add", "traffic_percentage": 101}, "update", "from 0 to 100"),
        ({"serverless_config": {"MemorySizeInMB": 2048}, "instance_type": "ml.m5.large"}, "create", "leave out instance_type"),
        ({"mode": "add", "rollout": {"strategy": "all_at_once"}}, "update", "mode 'add' adds a variant"),
        ({"serverless_config": {"MemorySizeInMB": 2048}, "rollout": {"strategy": "all_at_once"}}, "update", "serverless"),
        ({"instance_type": "m5.large"}, "create", "SageMaker instance type"),
        ({"variant_name": "has space"}, "create", "variant_name"),
        ({"wait": False, "synchronous": True}, "create", "say different things"),
        ({"wait_timeout": 10, "timeout_seconds": 20}, "create", "say different things"),
    ],
)
def test_bad_configs(config, operation, message):
    with pytest.raises(InvalidInputError, match=message):
        deployment_settings(config, operation=operation)


def test_deployflow_step_keys_are_mlflows_keys():
    settings = deployment_settings({"wait": "false", "wait_timeout": "30"}, operation="create")
    assert settings.synchronous is False and settings.timeout_seconds == 30.0
    assert deployment_settings({"wait": True, "synchronous": "true"}, operation="create").synchronous is True


# --------------------------------------------------------------------------------------------------
# Rollouts
# --------------------------------------------------------------------------------------------------


def test_canary_rollout_with_alarms_and_termination_wait():
    assert deployment_config(
        {"strategy": "canary", "canary_size": "10%", "wait_seconds": "300", "termination_wait_seconds": 120,
         "max_execution_seconds": 3600, "alarms": "latency-p99, errors-5xx"}
    ) == {
        "BlueGreenUpdatePolicy": {
            "TrafficRoutingConfiguration": {"Type": "CANARY", "WaitIntervalInSeconds": 300,
                                            "CanarySize": {"Type": "CAPACITY_PERCENT", "Value": 10}},
            "TerminationWaitInSeconds": 120,
            "MaximumExecutionTimeoutInSeconds": 3600,
        },
        "AutoRollbackConfiguration": {"Alarms": [{"AlarmName": "latency-p99"}, {"AlarmName": "errors-5xx"}]},
    }


def test_linear_all_at_once_and_rolling_rollouts():
    linear = deployment_config({"strategy": "linear", "step_size": 1, "wait_seconds": 60})
    assert linear["BlueGreenUpdatePolicy"]["TrafficRoutingConfiguration"] == {
        "Type": "LINEAR", "WaitIntervalInSeconds": 60, "LinearStepSize": {"Type": "INSTANCE_COUNT", "Value": 1}}
    assert deployment_config('{"strategy": "all_at_once"}') == {
        "BlueGreenUpdatePolicy": {"TrafficRoutingConfiguration": {"Type": "ALL_AT_ONCE", "WaitIntervalInSeconds": 0}}}
    rolling = deployment_config({"strategy": "rolling", "batch_size": {"type": "capacity_percent", "value": 25},
                                 "rollback_batch_size": 1, "wait_seconds": 30, "alarms": ["errors"]})
    assert rolling == {
        "RollingUpdatePolicy": {"MaximumBatchSize": {"Type": "CAPACITY_PERCENT", "Value": 25}, "WaitIntervalInSeconds": 30,
                                "RollbackMaximumBatchSize": {"Type": "INSTANCE_COUNT", "Value": 1}},
        "AutoRollbackConfiguration": {"Alarms": [{"AlarmName": "errors"}]},
    }
    own = {"BlueGreenUpdatePolicy": {"TrafficRoutingConfiguration": {"Type": "ALL_AT_ONCE", "WaitIntervalInSeconds": 0}}}
    assert deployment_config(own) == own


@pytest.mark.parametrize(
    "rollout, message",
    [
        ({"strategy": "canary", "wait_seconds": 60}, "needs 'canary_size'"),
        ({"strategy": "linear", "step_size": "10%"}, "needs 'wait_seconds'"),
        ({"strategy": "canary", "canary_size": "120%", "wait_seconds": 1}, "at most 100%"),
        ({"strategy": "canary", "canary_size": "5%", "wait_seconds": 4000}, "from 0 to 3600"),
        ({"strategy": "canary", "canary_size": "5%", "wait_seconds": 1, "max_execution_seconds": 60}, "600"),
        ({"strategy": "canary", "canary_size": "5%", "wait_seconds": 1, "alarms": [f"a{i}" for i in range(11)]}, "1 to 10"),
        ({"strategy": "canary", "canary_size": "5%", "wait_seconds": 1, "step_size": 1}, "does not apply"),
        ({"strategy": "rolling", "wait_seconds": 1}, "needs 'batch_size'"),
        ({"strategy": "rolling", "batch_size": 1, "wait_seconds": 1, "canary_size": 1}, "blue/green"),
        ({"strategy": "blue"}, "must be one of"),
        ({"strategy": "canary", "canary": "5%"}, "Unknown rollout key"),
        ({"BlueGreenUpdatePolicy": {}, "RollingUpdatePolicy": {}}, "exactly one"),
        ("[1]", "must be a dict"),
    ],
)
def test_bad_rollouts(rollout, message):
    with pytest.raises(InvalidInputError, match=message):
        deployment_config(rollout)


# --------------------------------------------------------------------------------------------------
# States
# --------------------------------------------------------------------------------------------------


def _described(status, config="c-new", reason=None):
    found = {"EndpointName": "e", "EndpointStatus": status, "EndpointConfigName": config}
    if reason:
        found["FailureReason"] = reason
    return found


@pytest.mark.parametrize(
    "status, state",
    [("Creating", State.PENDING), ("Updating", State.PENDING), ("SystemUpdating", State.PENDING),
     ("RollingBack", State.PENDING), ("InService", State.READY), ("Failed", State.FAILED),
     ("OutOfService", State.FAILED), ("UpdateRollbackFailed", State.FAILED), ("Deleting", State.FAILED),
     ("SomethingNew", State.PENDING)],
)
def test_every_endpoint_status_has_a_state(status, state):
    assert status_of(_described(status)).state is state


def test_inservice_on_the_replaced_config_is_a_rolled_back_update():
    tags = {DESIRED_CONFIG_TAG: "c-new", PREVIOUS_CONFIG_TAG: "c-old"}
    rolled = status_of(_described("InService", "c-old", "Alarm errors-5xx in ALARM"), tags)
    assert rolled.state is State.FAILED
    assert "rolled back" in rolled.reason and "Alarm errors-5xx in ALARM" in rolled.reason
    assert status_of(_described("InService", "c-new"), tags).state is State.READY
    changed = status_of(_described("InService", "c-other"), tags)
    assert changed.state is State.READY and "outside this client" in changed.reason
    assert status_of(_described("Failed", reason="ping failed")).reason == "ping failed"
    assert "rolling back" in status_of(_described("RollingBack", reason="alarm")).reason


# --------------------------------------------------------------------------------------------------
# Model directories, names, errors
# --------------------------------------------------------------------------------------------------


def test_mlmodel_flavors_and_the_served_flavor(tmp_path, monkeypatch):
    model = write_model(tmp_path / "m", flavors=("python_function", "sklearn"))
    assert read_flavors(model) == ["python_function", "sklearn"]
    monkeypatch.setitem(sys.modules, "yaml", None)  # as without PyYAML: the line reader says the same
    assert read_flavors(model) == ["python_function", "sklearn"]
    assert choose_flavor(["python_function"], None, where="m") == "python_function"
    assert choose_flavor(["python_function"], "pyfunc", where="m") == "python_function"
    with pytest.raises(InvalidInputError, match="no 'python_function' flavor"):
        choose_flavor(["sklearn"], None, where="m")
    with pytest.raises(InvalidInputError, match="serves the 'python_function' flavor only"):
        choose_flavor(["python_function", "mleap"], "mleap", where="m")
    with pytest.raises(InvalidInputError, match="no MLmodel file"):
        read_flavors(tmp_path)


def test_long_model_uris_are_recorded_across_tags():
    from deployflow.targets.sagemaker.resources import uri_from_tags, uri_tags

    uri = "s3://bucket/" + "very-deep/" * 60 + "model"
    tags = uri_tags(uri)
    assert [tag["Key"] for tag in tags] == ["model_uri", "deployflow:model_uri:2", "deployflow:model_uri:3"]
    assert all(len(tag["Value"]) <= 256 for tag in tags)
    assert uri_from_tags({tag["Key"]: tag["Value"] for tag in tags}) == uri
    assert uri_from_tags({"model_uri": "runs:/abc/model"}) == "runs:/abc/model"  # what MLflow records


def test_unique_names_fit_sagemakers_63_characters():
    short = unique_name("churn", "model")
    assert short.startswith("churn-model-") and len(short) == len("churn-model-") + 20
    long = unique_name("x" * 30 + "middle" + "y" * 30, "config")
    assert len(long) == 63 and "---" in long and long.startswith("xxx") and "-config-" in long


def test_botocore_errors_become_deployflow_errors():
    from botocore.exceptions import ClientError, EndpointConnectionError, ReadTimeoutError

    def answer(code, status, message="m"):
        return ClientError({"Error": {"Code": code, "Message": message}, "ResponseMetadata": {"HTTPStatusCode": status}}, "Op")

    cases = [
        (answer("ThrottlingException", 400), deployflow.TransientError, True),
        (answer("InternalFailure", 500), deployflow.TransientError, True),
        (answer("ServiceUnavailable", 503), deployflow.TransientError, True),
        (answer("ValidationException", 400, "Could not find endpoint 'arn:...'"), deployflow.NotFoundError, False),
        (answer("ValidationError", 400, "Endpoint e of account 1 not found."), deployflow.NotFoundError, False),
        (answer("ValidationException", 400, "Cannot create already existing endpoint"), deployflow.ConflictError, False),
        (answer("ValidationException", 400, "Value at 'instanceType' failed"), deployflow.InvalidInputError, False),
        (answer("AccessDeniedException", 400), deployflow.AuthenticationError, False),
        (answer("UnrecognizedClientException", 400), deployflow.AuthenticationError, False),
        (answer("NoSuchBucket", 404), deployflow.NotFoundError, False),
        (answer("ResourceLimitExceeded", 400), deployflow.InvalidInputError, False),
        (EndpointConnectionError(endpoint_url="https://x"), deployflow.TransientError, True),
        (ReadTimeoutError(endpoint_url="https://x"), deployflow.RequestTimeoutError, True),
    ]
    for exc, cls, retryable in cases:
        error = translate(exc, action="SageMaker Op")
        assert type(error) is cls, (exc, error)
        assert error.retryable is retryable, exc
        assert str(error).startswith("SageMaker Op")
