"""Every templated field of every operator and sensor renders with Airflow's Jinja environment."""

from __future__ import annotations

import datetime
from typing import Any

import pytest

from deployflow.integrations.airflow import operators, sensors

#: Valid constructor arguments for each class; every template field is then replaced by a template.
CLASSES: dict[type, dict[str, Any]] = {
    operators.CreateDeploymentOperator: {"deployment_name": "d", "model_uri": "m"},
    operators.UpdateDeploymentOperator: {"deployment_name": "d", "model_uri": "m"},
    operators.DeleteDeploymentOperator: {"deployment_name": "d"},
    operators.CreateEndpointOperator: {"endpoint": "e"},
    operators.UpdateEndpointOperator: {"endpoint": "e", "config": {}},
    operators.DeleteEndpointOperator: {"endpoint": "e"},
    operators.PredictOperator: {"deployment_name": "d", "inputs": [[1]]},
    operators.BatchPredictOperator: {"deployment_name": "d", "input_path": "i", "output_path": "o"},
    sensors.WaitForDeploymentReadySensor: {"deployment_name": "d"},
    sensors.WaitForEndpointReadySensor: {"endpoint": "e"},
}

#: Fields that hold structures: rendered inside, shown as JSON in the UI.
DICT_FIELDS = {"config", "inputs", "model_params"}
LIST_FIELDS = {"feature_columns", "keep_columns"}


def _template(field: str) -> Any:
    if field in DICT_FIELDS:
        return {"key": "{{ params.value }}-" + field, "number": 3}
    if field in LIST_FIELDS:
        return ["{{ params.value }}-" + field, "fixed"]
    return "{{ params.value }}-" + field + "-{{ ds_nodash }}"


def _expected(field: str) -> Any:
    if field in DICT_FIELDS:
        return {"key": "v1-" + field, "number": 3}
    if field in LIST_FIELDS:
        return ["v1-" + field, "fixed"]
    return "v1-" + field + "-20250102"


def test_every_class_is_covered():
    from deployflow.integrations.airflow import __all__ as exported

    classes = {name for name in exported if name.endswith(("Operator", "Sensor"))}
    assert classes == {cls.__name__ for cls in CLASSES}


@pytest.mark.parametrize("cls", list(CLASSES), ids=lambda cls: cls.__name__)
def test_every_template_field_renders(cls):
    from airflow.sdk import DAG

    with DAG(f"render_{cls.__name__}", schedule=None, start_date=datetime.datetime(2025, 1, 1)):
        task = cls(task_id="t", **CLASSES[cls])
    fields = list(task.template_fields)
    assert "deployflow_conn_id" in fields
    for field in fields:
        setattr(task, field, _template(field))
    task.render_template_fields({"params": {"value": "v1"}, "ds_nodash": "20250102"})
    for field in fields:
        assert getattr(task, field) == _expected(field), field
    # Structures are shown as JSON in the UI; renderers only name real template fields.
    assert {field for field in fields if field in DICT_FIELDS} <= {
        field for field, renderer in task.template_fields_renderers.items() if renderer == "json"
    }
    assert set(task.template_fields_renderers) <= set(fields)
