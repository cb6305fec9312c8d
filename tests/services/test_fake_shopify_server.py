"""The fake Shopify Admin API answers like Shopify, over real HTTP on loopback."""

from __future__ import annotations

import json
import time
import urllib.request
from collections import defaultdict

import pytest

from services.fake_shopify.http_server import FakeShopifyServer, ServerConfig
from services.fake_shopify.store_db import StoreDB
from tests.services.conftest import TOKEN, call, control, gql

ORDERS_QUERY = """
query($after: String) {
  orders(first: 5, after: $after) {
    edges { cursor node {
      id name
      totalPriceSet { shopMoney { amount currencyCode } presentmentMoney { amount currencyCode } }
      lineItems(first: 10) { nodes { id sku quantity } }
    } }
    pageInfo { hasNextPage endCursor }
  }
}
"""


def _wait_bulk(server: FakeShopifyServer, timeout: float = 20.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        _, _, body = gql(
            server,
            "{ currentBulkOperation { id status errorCode objectCount rootObjectCount "
            "fileSize url partialDataUrl } }",
        )
        op = body["data"]["currentBulkOperation"]
        if op["status"] in ("COMPLETED", "FAILED", "CANCELED"):
            return op
        time.sleep(0.05)
    raise AssertionError("bulk operation did not finish")


def _download(url: str) -> list[dict]:
    with urllib.request.urlopen(url, timeout=30) as resp:  # no token: a signed storage URL
        return [json.loads(line) for line in resp.read().decode().splitlines() if line]


@pytest.mark.parametrize(
    ("token", "header_present"), [(None, False), ("wrong", True)], ids=["missing", "wrong"]
)
def test_auth_is_refused_without_the_right_token(server, token, header_present):
    status, _, body = gql(server, "{ shop { name } }", token=token)
    assert status == 401
    assert body == {
        "errors": "[API] Invalid API key or access token (unrecognized login or wrong password)"
    }
    status, _, _ = call(f"{server.admin_url()}/orders.json", token=token)
    assert status == 401


@pytest.mark.parametrize(
    ("asked", "status", "served"),
    [
        ("2026-01", 200, "2026-01"),
        ("2023-10", 200, "2025-10"),
        ("2024-13", 404, None),
        ("latest", 404, None),
        ("unstable", 200, "unstable"),
    ],
    ids=["supported", "retired-falls-forward", "bad-month", "not-a-version", "unstable"],
)
def test_api_versions_are_pinned_in_the_path(server, asked, status, served):
    got, headers, _ = gql(server, "{ shop { name } }", version=asked)
    assert got == status
    assert headers.get("x-shopify-api-version") == served


def test_headers_are_lowercase_like_shopify(server):
    raw = urllib.request.Request(
        f"{server.admin_url()}/orders.json?status=any&limit=1",
        headers={"X-Shopify-Access-Token": TOKEN},
    )
    with urllib.request.urlopen(raw) as resp:
        names = [k for k, _ in resp.headers.items()]
    assert "x-shopify-shop-api-call-limit" in names and "link" in names and "x-request-id" in names
    assert all(n == n.lower() for n in names)


def test_query_cost_is_computed_as_shopify_does(server):
    # orders(first:5): 2 + 5 x (order 1 + totalPriceSet 3 + lineItems(2 + 10 x 1)) = 2 + 5 x 16
    status, _, body = gql(server, ORDERS_QUERY)
    assert status == 200 and "errors" not in body
    cost = body["extensions"]["cost"]
    assert cost["requestedQueryCost"] == 82
    nodes = [e["node"] for e in body["data"]["orders"]["edges"]]
    assert len(nodes) == 5
    expected_actual = 2 + sum(1 + 3 + 2 + len(n["lineItems"]["nodes"]) for n in nodes)
    assert cost["actualQueryCost"] == expected_actual
    assert cost["throttleStatus"]["maximumAvailable"] == 1000.0
    assert cost["throttleStatus"]["restoreRate"] == 50.0


def test_a_query_over_1000_points_is_refused(server):
    _, _, body = gql(
        server, "{ orders(first: 250) { nodes { id lineItems(first: 250) { nodes { id } } } } }"
    )
    assert body["errors"][0]["extensions"]["code"] == "MAX_COST_EXCEEDED"
    assert "data" not in body


def test_missing_first_is_an_error(server):
    _, _, body = gql(server, "{ orders { nodes { id } } }")
    assert body["errors"][0]["message"] == "you must provide one of first or last"


def test_throttled_when_the_bucket_cannot_pay_and_recovers_at_the_restore_rate(server):
    control(server, "faults", {"drain_bucket": True})
    status, _, body = gql(server, "{ orders(first: 10) { nodes { id } } }")
    assert status == 200
    assert body["errors"][0]["message"] == "Throttled"
    assert body["errors"][0]["extensions"]["code"] == "THROTTLED"
    assert "data" not in body
    cost = body["extensions"]["cost"]
    assert cost["requestedQueryCost"] == 12 and cost["actualQueryCost"] is None
    assert cost["throttleStatus"]["currentlyAvailable"] < 12
    time.sleep(12 / 50 + 0.1)  # 50 points per second restore
    _, _, body = gql(server, "{ orders(first: 10) { nodes { id } } }")
    assert "errors" not in body and len(body["data"]["orders"]["nodes"]) == 10


def test_graphql_pagination_walks_every_order_once(server, store_path):
    seen: list[str] = []
    after = None
    while True:
        _, _, body = gql(server, ORDERS_QUERY, {"after": after})
        conn = body["data"]["orders"]
        seen += [e["node"]["id"] for e in conn["edges"]]
        if not conn["pageInfo"]["hasNextPage"]:
            break
        after = conn["pageInfo"]["endCursor"]
    ids = StoreDB(store_path).ids("orders")
    assert sorted(seen) == sorted(f"gid://shopify/Order/{i}" for i in ids)
    assert len(seen) == len(set(seen))


def test_updated_at_search_filters_orders(server, store_path):
    docs = list(StoreDB(store_path).iterate("orders"))
    cut = sorted(d["updated_at"] for d in docs)[len(docs) // 2]
    query = f"updated_at:>='{cut}' AND updated_at:<='2030-01-01T00:00:00Z'"
    _, _, body = gql(
        server,
        "query($q: String) { orders(first: 250, query: $q, sortKey: UPDATED_AT) "
        "{ nodes { id updatedAt } } }",
        {"q": query},
    )
    got = {n["id"] for n in body["data"]["orders"]["nodes"]}
    assert got == {f"gid://shopify/Order/{d['id']}" for d in docs if d["updated_at"] >= cut}
    stamps = [n["updatedAt"] for n in body["data"]["orders"]["nodes"]]
    assert stamps == sorted(stamps)


@pytest.mark.parametrize("grouped", [True, False], ids=["grouped", "interleaved"])
def test_bulk_export_reassembles_into_the_seeded_orders(server, store_path, grouped):
    control(server, "faults", {"bulk": {"page_size": 7}})
    inner = "{ orders { edges { node { id name lineItems { edges { node { id sku } } } } } } }"
    _, _, body = gql(
        server,
        "mutation($q: String!, $g: Boolean) { bulkOperationRunQuery(query: $q, "
        "groupObjects: $g) { bulkOperation { id status } userErrors { field message code } } }",
        {"q": inner, "g": grouped},
    )
    payload = body["data"]["bulkOperationRunQuery"]
    assert payload["userErrors"] == [] and payload["bulkOperation"]["status"] == "CREATED"
    op = _wait_bulk(server)
    assert op["status"] == "COMPLETED" and op["url"] and op["partialDataUrl"] is None
    lines = _download(op["url"])
    assert op["objectCount"] == str(len(lines)) and isinstance(op["fileSize"], str)
    parents = {line["id"]: line for line in lines if "__parentId" not in line}
    children: dict[str, set[str]] = defaultdict(set)
    position = {id(line): i for i, line in enumerate(lines)}
    index_of = {line["id"]: i for i, line in enumerate(lines)}
    adjacent = 0
    for line in lines:
        if "__parentId" in line:
            children[line["__parentId"]].add(line["id"])
            assert index_of[line["__parentId"]] < position[id(line)]  # after its parent
            adjacent += lines[position[id(line)] - 1].get("id") == line["__parentId"]
    store = StoreDB(store_path)
    expected = {f"gid://shopify/Order/{d['id']}": d for d in store.iterate("orders")}
    assert set(parents) == set(expected)
    for gid_, doc in expected.items():
        assert children[gid_] == {f"gid://shopify/LineItem/{li['id']}" for li in doc["line_items"]}
    if not grouped:
        assert adjacent < len(parents)  # children are not (all) right after their parent


def test_second_bulk_operation_is_refused_while_one_runs_and_cancel_works(server):
    control(server, "faults", {"bulk": {"page_size": 1, "page_delay": 0.2}})
    run = (
        'mutation { bulkOperationRunQuery(query: "{ orders { edges { node { id } } } }") '
        "{ bulkOperation { id } userErrors { field message code } } }"
    )
    _, _, first = gql(server, run, version="2025-10")
    op_id = first["data"]["bulkOperationRunQuery"]["bulkOperation"]["id"]
    _, _, second = gql(server, run, version="2025-10")
    errors = second["data"]["bulkOperationRunQuery"]["userErrors"]
    assert errors[0]["code"] == "OPERATION_IN_PROGRESS"
    assert errors[0]["message"] == (
        f"A bulk query operation for this app and shop is already in progress: {op_id}."
    )
    _, _, cancel = gql(
        server,
        f'mutation {{ bulkOperationCancel(id: "{op_id}") {{ bulkOperation {{ status }} '
        "userErrors { message } } }",
    )
    assert cancel["data"]["bulkOperationCancel"]["bulkOperation"]["status"] == "CANCELING"
    op = _wait_bulk(server)
    assert op["status"] == "CANCELED"
    _, _, by_id = gql(server, f'{{ node(id: "{op_id}") {{ ... on BulkOperation {{ status }} }} }}')
    assert by_id["data"]["node"]["status"] == "CANCELED"


@pytest.mark.parametrize("code", ["INTERNAL_SERVER_ERROR", "TIMEOUT"])
def test_failed_bulk_operation_exposes_partial_data(server, code):
    control(server, "faults", {"bulk_fail": code, "fail_after_pages": 1, "bulk": {"page_size": 5}})
    gql(
        server,
        'mutation { bulkOperationRunQuery(query: "{ orders { edges { node { id } } } }") '
        "{ bulkOperation { id } userErrors { message } } }",
    )
    op = _wait_bulk(server)
    assert op["status"] == "FAILED" and op["errorCode"] == code
    assert op["url"] is None and op["partialDataUrl"]
    assert len(_download(op["partialDataUrl"])) == 5


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("{ shop { name } }", "at least one connection"),
        ('{ node(id: "gid://shopify/Order/1") { id } }', "`node`"),
        (
            "{ orders { edges { node { name lineItems { edges { node { id } } } } } } }",
            "must select the 'id'",
        ),
    ],
    ids=["no-connection", "top-level-node", "nested-without-id"],
)
def test_invalid_bulk_queries_get_user_errors(server, query, message):
    _, _, body = gql(
        server,
        "mutation($q: String!) { bulkOperationRunQuery(query: $q) "
        "{ bulkOperation { id } userErrors { code message } } }",
        {"q": query},
    )
    error = body["data"]["bulkOperationRunQuery"]["userErrors"][0]
    assert error["code"] == "INVALID" and message in error["message"]


def test_records_updated_mid_export_keep_old_values_in_pages_already_written(server, store_path):
    ids = StoreDB(store_path).ids("orders")
    control(server, "faults", {"bulk": {"page_size": 10, "page_delay": 0.3}})
    gql(
        server,
        "mutation { bulkOperationRunQuery("
        'query: "{ orders { edges { node { id email updatedAt } } } }") '
        "{ bulkOperation { id } } }",
    )
    time.sleep(0.4)  # the first page is written
    control(
        server,
        "mutate",
        {"resource": "orders", "id": ids[0], "changes": {"email": "early@changed.example"}},
    )
    control(
        server,
        "mutate",
        {"resource": "orders", "id": ids[-1], "changes": {"email": "late@changed.example"}},
    )
    op = _wait_bulk(server)
    by_id = {line["id"]: line for line in _download(op["url"])}
    assert by_id[f"gid://shopify/Order/{ids[0]}"]["email"] != "early@changed.example"
    assert by_id[f"gid://shopify/Order/{ids[-1]}"]["email"] == "late@changed.example"


def test_rest_link_pagination_walks_all_records_exactly_once(server, store_path):
    url = f"{server.admin_url()}/orders.json?status=any&limit=7"
    seen: list[int] = []
    pages = 0
    while url:
        status, headers, body = call(url)
        assert status == 200
        pages += 1
        seen += [o["id"] for o in body["orders"]]
        links = dict(
            (part.split("; ")[1].split('"')[1], part.split("; ")[0].strip("<>"))
            for part in headers.get("link", "").split(", ")
            if part
        )
        if pages > 1:
            assert "previous" in links
        url = links.get("next")
    assert seen == StoreDB(store_path).ids("orders")
    assert pages == -(-len(seen) // 7)


def test_rest_refuses_filters_beside_page_info(server):
    _, headers, _ = call(f"{server.admin_url()}/orders.json?status=any&limit=3")
    next_url = headers["link"].split(">; ")[0].lstrip("<")
    status, _, body = call(next_url + "&updated_at_min=2020-01-01")
    assert status == 400
    assert body == {"errors": "updated_at_min cannot be passed when page_info is present"}


def test_rest_defaults_to_open_orders_and_shapes_money_and_times(server):
    _, _, open_only = call(f"{server.admin_url()}/orders/count.json")
    _, _, every = call(f"{server.admin_url()}/orders/count.json?status=any")
    assert open_only["count"] < every["count"]
    _, _, body = call(f"{server.admin_url()}/orders.json?status=any&limit=250")
    order = body["orders"][0]
    assert isinstance(order["total_price"], str) and "." in order["total_price"]
    assert order["created_at"][-6:] in ("-05:00", "-04:00")
    assert order["admin_graphql_api_id"] == f"gid://shopify/Order/{order['id']}"
    currencies = {o["presentment_currency"] for o in body["orders"]}
    assert "USD" in currencies and currencies & {"EUR", "GBP"}
    assert any(o["test"] for o in body["orders"]) and any(o["cancelled_at"] for o in body["orders"])
    assert any(o["customer"] is None for o in body["orders"])
    assert any(o["financial_status"] == "partially_refunded" for o in body["orders"])


def test_ids_above_2_53_arrive_as_exact_numbers_in_rest_and_gids_in_graphql(server):
    raw = urllib.request.Request(
        f"{server.admin_url()}/orders.json?status=any&limit=250",
        headers={"X-Shopify-Access-Token": TOKEN},
    )
    with urllib.request.urlopen(raw) as resp:
        text = resp.read().decode()
    ids = [o["id"] for o in json.loads(text)["orders"]]
    big = [i for i in ids if i > 2**53]
    assert big and f'"id":{big[0]},' in text  # a bare JSON number, not a string
    _, _, body = gql(
        server, f'{{ order(id: "gid://shopify/Order/{big[0]}") {{ id legacyResourceId }} }}'
    )
    assert body["data"]["order"] == {
        "id": f"gid://shopify/Order/{big[0]}",
        "legacyResourceId": str(big[0]),
    }


def test_rest_bucket_answers_429_with_retry_after(store_path):
    config = ServerConfig(db_path=store_path, token=TOKEN, rest_bucket_size=3, rest_leak_rate=0.5)
    with FakeShopifyServer(config) as srv:
        limits = [
            call(f"{srv.admin_url()}/products.json")[1]["x-shopify-shop-api-call-limit"]
            for _ in range(3)
        ]
        assert limits == ["1/3", "2/3", "3/3"]
        status, headers, body = call(f"{srv.admin_url()}/products.json")
        assert status == 429 and float(headers["retry-after"]) >= 2.0
        assert body["errors"].startswith("Exceeded 2 calls per second")


def test_request_log_records_costs_and_throttle_status(server):
    control(server, "clear-log", {})
    gql(server, ORDERS_QUERY)
    call(f"{server.admin_url()}/customers.json")
    log = control(server, "requests")["requests"]
    graphql, rest = log
    assert graphql["api"] == "graphql" and graphql["requested_cost"] == 82
    assert graphql["actual_cost"] is not None and graphql["throttle_available"] is not None
    assert (
        rest["api"] == "rest" and rest["status"] == 200 and rest["rest_call_limit"].endswith("/40")
    )


@pytest.mark.parametrize("action", ["503", "500", "429"])
def test_fault_on_the_nth_request(server, action):
    control(server, "faults", {"rules": [{"action": action, "at": 2}]})
    first = gql(server, "{ shop { name } }")[0]
    status, headers, _ = gql(server, "{ shop { name } }")
    third = gql(server, "{ shop { name } }")[0]
    assert (first, status, third) == (200, int(action), 200)
    assert "retry-after" in headers


def test_connection_reset_fault(server):
    control(server, "faults", {"rules": [{"action": "reset", "at": 1}]})
    with pytest.raises((ConnectionError, OSError)):
        gql(server, "{ shop { name } }")
    assert gql(server, "{ shop { name } }")[0] == 200


def test_token_rotation_makes_the_old_token_fail(server):
    new = control(server, "rotate-token", {"token": "shpat_rotated"})["token"]
    assert gql(server, "{ shop { name } }")[0] == 401
    assert gql(server, "{ shop { name } }", token=new)[0] == 200


def test_deleted_products_show_as_deletion_events(server, store_path):
    pid = StoreDB(store_path).ids("products")[0]
    control(server, "mutate", {"resource": "products", "id": pid, "delete": True})
    _, _, body = gql(
        server,
        "{ deletionEvents(first: 10, subjectTypes: [PRODUCT]) "
        "{ nodes { subjectId subjectType occurredAt } } }",
    )
    assert body["data"]["deletionEvents"]["nodes"][0]["subjectId"] == f"gid://shopify/Product/{pid}"


def test_command_line_server_starts_and_answers(store_path):
    import subprocess
    import sys

    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "services.fake_shopify",
            "--db",
            str(store_path),
            "--port",
            "0",
            "--token",
            TOKEN,
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        line = proc.stdout.readline().strip()
        assert line.startswith("listening http://127.0.0.1:")
        base = line.split(" ", 1)[1]
        status, _, body = call(
            f"{base}/admin/api/2026-01/graphql.json", body={"query": "{ shop { currencyCode } }"}
        )
        assert status == 200 and body["data"]["shop"]["currencyCode"] == "USD"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        proc.stdout.close()
