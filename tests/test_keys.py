"""Redis key names are data: a job, a client or a delivery written before an upgrade must be
found after it, so every name stays byte for byte what it was."""

from __future__ import annotations

from service.keys import DELIVERY_QUEUE, JOB_QUEUE, KEYS
from service.keys import Keys as ServiceKeys
from webhooks.keys import Keys as DeliveryKeys


def test_the_service_keys_are_the_ones_existing_data_is_under():
    assert [
        JOB_QUEUE,
        DELIVERY_QUEUE,
        KEYS.job("job_1"),
        KEYS.job_deliveries("job_1"),
        KEYS.job_runner("job_1"),
        KEYS.job_index,
        KEYS.job_index_of("client", "cli_1"),
        KEYS.job_metrics,
        KEYS.client("cli_1"),
        KEYS.clients,
        KEYS.api_key("ab12"),
        KEYS.unfinished_jobs("cli_1"),
        KEYS.client_rate("cli_1"),
        KEYS.idempotency("cli_1", "k"),
        KEYS.batch("bat_1"),
        KEYS.batch("bat_1", "items"),
        KEYS.running_batches(),
        KEYS.running_batches("cli_1"),
        KEYS.events("job_1"),
        KEYS.vision_answer("d", "1:2", "m", "b"),
        KEYS.generated_images("cli_1", "d"),
        KEYS.worker("w1"),
        KEYS.provider_model("openai", "gpt"),
        KEYS.provider_slots("openai"),
        KEYS.endpoint_test("evt_1"),
        KEYS.console_failed_logins("10.0.0.1"),
        KEYS.console_ended("s1"),
    ] == [
        "pixhook:queue:jobs",
        "pixhook:queue:deliveries",
        "pixhook:job:job_1",
        "pixhook:job:job_1:deliveries",
        "pixhook:job:job_1:runner",
        "pixhook:jobs:index",
        "pixhook:jobs:index:client:cli_1",
        "pixhook:metrics:jobs",
        "pixhook:client:cli_1",
        "pixhook:clients",
        "pixhook:apikey:ab12",
        "pixhook:client:cli_1:unfinished",
        "pixhook:client:cli_1:rate",
        "pixhook:client:cli_1:idempotency:"
        "8254c329a92850f6d539dd376f4816ee2764517da5e0235514af433164480d7a",
        "pixhook:batch:bat_1",
        "pixhook:batch:bat_1:items",
        "pixhook:batches:running",
        "pixhook:batches:running:cli_1",
        "pixhook:events:job_1",
        "pixhook:vision:d:1:2:m:b",
        "pixhook:generated:cli_1:d",
        "pixhook:worker:w1",
        "pixhook:provider:openai:{gpt}",
        "pixhook:provider:openai:slots",
        "pixhook:ping:evt_1",
        "pixhook:console:failed-logins:10.0.0.1",
        "pixhook:console:ended:s1",
    ]


def test_the_delivery_keys_are_the_ones_existing_data_is_under():
    keys = DeliveryKeys("pixhook")
    assert [
        keys.delivery("dlv_1"),
        keys.attempts("dlv_1"),
        keys.due,
        keys.by_status("cli_1", "dead"),
        keys.dlq,
        keys.dlq_owner("cli_1"),
        keys.dlq_owner("cli_1", "example.com"),
        keys.dlq_host("example.com"),
        keys.dlq_redrivable("example.com:443"),
        keys.redrive_gate("example.com:443"),
        keys.secrets_version,
        keys.circuit("example.com"),
        keys.circuits_open,
        keys.endpoints("cli_1"),
        *keys.endpoint_health("ep_1"),
        *keys.pace("https://hooks.slack.com/x"),
        keys.delivery_metrics,
        keys.history(120.5),
    ] == [
        "pixhook:delivery:dlv_1",
        "pixhook:delivery:dlv_1:attempts",
        "pixhook:deliveries:due",
        "pixhook:deliveries:owner:cli_1:dead",
        "pixhook:dlq",
        "pixhook:dlq:owner:cli_1",
        "pixhook:dlq:owner:cli_1:host:example.com",
        "pixhook:dlq:host:example.com",
        "pixhook:dlq:redrivable:example.com:443",
        "pixhook:dlq:redrive:example.com:443",
        "pixhook:secrets-version",
        "pixhook:circuit:example.com",
        "pixhook:circuits:open",
        "pixhook:endpoints:cli_1",
        "pixhook:endpoint:ep_1:health",
        "pixhook:endpoint:ep_1:samples",
        "pixhook:pace:9d5fa66bc90effd9e1119b4a54b1c962:free",
        "pixhook:pace:9d5fa66bc90effd9e1119b4a54b1c962:last",
        "pixhook:metrics:deliveries",
        "pixhook:history:2",
    ]


def test_a_store_given_a_prefix_keeps_its_keys_under_it():
    assert ServiceKeys("t1").job("job_1") == "t1:job:job_1"
    assert DeliveryKeys("t1").delivery("dlv_1") == "t1:delivery:dlv_1"
