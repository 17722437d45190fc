"""The app answers only requests for its own names (DNS rebinding) and from its own
origin (cross-site requests), on every route, over real sockets: which names are its
own (localhost, addresses, public_url, allowed_hosts), when the check applies (no
token, or allowed_hosts given; "*" turns it off), an app embedded in one's own, and
`serve`."""

from __future__ import annotations

import argparse
import asyncio
import re
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from web_flows import WORKFLOWS

from graflow_async.cli.serve import add_serve_command, serve
from graflow_async.feedback import FeedbackRequest, FeedbackType, MemoryFeedbackStore
from graflow_async.web import create_app, setup
from graflow_async.web.hosts import served_names

TOKEN = "hosts-token"
ATTACKER = "attacker.example"


@asynccontextmanager
async def serving(app: web.Application | None = None, **kwargs: Any) -> AsyncIterator[TestClient[Any, Any]]:
    kwargs.setdefault("feedback_store", MemoryFeedbackStore())
    kwargs.setdefault("workflows", WORKFLOWS)
    async with TestClient(TestServer(app if app is not None else create_app(**kwargs))) as client:
        yield client


def start_run(client: TestClient[Any, Any], **headers: str) -> Any:
    return client.post("/api/runs", json={"workflow": "hello"}, headers=headers)


async def runs_listed(client: TestClient[Any, Any], **headers: str) -> int:
    return len((await (await client.get("/api/runs", headers=headers)).json())["runs"])


async def test_a_rebinding_page_gets_421_on_every_route_of_a_tokenless_app() -> None:
    store = MemoryFeedbackStore()
    await store.create(FeedbackRequest("fb-1", "run-1", "t", FeedbackType.APPROVAL, "Ship?"))
    async with serving(feedback_store=store) as client:
        foreign = {"Host": f"{ATTACKER}:{client.port}", "Origin": f"http://{ATTACKER}:{client.port}"}
        routes = [(r.method, r.resource.canonical) for r in client.app.router.routes() if r.resource is not None]
        assert len(routes) > 20
        for method, path in routes:
            url = re.sub(r"\{\w+\}", "fb-1", path)
            async with client.request(
                method, url, headers=foreign, json={"approved": True}, allow_redirects=False
            ) as response:
                assert response.status == 421, (method, path)
                body = await response.json() if method != "HEAD" else {"error": "this server does not answer"}
                assert "this server does not answer" in body["error"]
        assert (await store.get("fb-1"))[1] is None  # the answer never got through
        assert await runs_listed(client) == 0
        assert (await start_run(client, Host=f"{ATTACKER}.")).status == 421  # the fully qualified form
        assert (await start_run(client, Host="127.0.0.1:80@attacker.example")).status == 421


@pytest.mark.parametrize(
    "host",
    [
        "127.0.0.1:{port}",
        "localhost:{port}",
        "LocalHost.",
        "[::1]:{port}",
        "10.20.30.40:8080",
        "[fe80::1]",
        "192.168.1.5",
    ],
)
async def test_the_apps_own_names_and_any_address_are_answered(host: str) -> None:
    async with serving() as client:
        response = await start_run(client, Host=host.format(port=client.port))
        assert response.status == 202, await response.text()
        assert (await client.get("/health", headers={"Host": host.format(port=client.port)})).status == 200


async def test_a_request_without_host_comes_from_no_browser_and_is_answered() -> None:
    async with serving() as client:
        reader, writer = await asyncio.open_connection(client.host, client.port)
        writer.write(b"GET /api/runs HTTP/1.0\r\n\r\n")
        async with asyncio.timeout(5):
            answer = await reader.read()
        writer.close()
        assert answer.startswith(b"HTTP/1.0 200") or answer.startswith(b"HTTP/1.1 200"), answer[:80]


async def test_a_foreign_origin_gets_403_even_for_the_apps_own_host() -> None:
    async with serving() as client:
        own = f"127.0.0.1:{client.port}"
        for origin in (
            "https://evil.example",
            "null",
            f"http://127.0.0.1:{client.port + 1}",
            "http://localhost",
            f"http://localhost:{client.port}",
            "not a url",
            f"http://127.0.0.1:{client.port}/path",
        ):
            response = await start_run(client, Host=own, Origin=origin)
            assert response.status == 403, origin
            assert "cross-origin request refused" in (await response.json())["error"]
        run = await (await start_run(client, Host=own)).json()
        cancel = await client.post(f"/api/runs/{run['run_id']}/cancel", headers={"Origin": "https://evil.example"})
        assert cancel.status == 403  # a plain form post from another site: no preflight to stop it
        assert await runs_listed(client) == 1
        assert (await start_run(client, Host=own, Origin=f"http://{own}")).status == 202
        assert (await start_run(client, Host="localhost", Origin="http://localhost:80")).status == 202
        assert await runs_listed(client) == 3


async def test_public_url_names_the_host_and_origin_a_proxy_serves_the_app_under() -> None:
    async with serving(public_url="https://ops.example.com/wf") as client:
        for host in ("ops.example.com", "OPS.example.com:443"):
            assert (await start_run(client, Host=host)).status == 202
        # a proxy that rewrites Host to the app's address: the page's origin is still the public one
        assert (await start_run(client, Origin="https://ops.example.com")).status == 202
        assert (await start_run(client, Origin="http://ops.example.com")).status == 403  # another origin
        assert (await start_run(client, Host="ops.example.com.evil.example")).status == 421
        assert (await start_run(client, Host="other.example.com")).status == 421


async def test_allowed_hosts_adds_names_and_domains_and_applies_with_a_token_too() -> None:
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    async with serving(auth_token=TOKEN, allowed_hosts=["App.Internal", ".corp.example"]) as client:
        for host in ("app.internal", "app.internal:8080", "corp.example", "a.b.corp.example"):
            assert (await start_run(client, Host=host, **bearer)).status == 202, host
        for host in ("evilcorp.example", "internal", ATTACKER):
            assert (await start_run(client, Host=host, **bearer)).status == 421, host
        assert (await start_run(client, Origin="https://app.internal:8443", **bearer)).status == 202
        assert (await start_run(client, Origin="https://ui.corp.example", **bearer)).status == 202
        assert (await start_run(client, Origin=f"https://{ATTACKER}", **bearer)).status == 403


async def test_with_a_token_and_no_allowed_hosts_any_name_is_answered() -> None:
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    async with serving(auth_token=TOKEN) as client:
        assert (await start_run(client, Host="shop.example.com", **bearer)).status == 202
        assert (await start_run(client, Host=ATTACKER)).status == 401  # the token stops a rebinding page


async def test_a_star_turns_the_check_off_for_a_proxy_that_rewrites_host() -> None:
    async with serving(allowed_hosts=["*"]) as client:
        assert (await start_run(client, Host="backend-7f9c", Origin="https://anything.example")).status == 202


async def test_an_app_embedded_in_ones_own_guards_its_routes_only() -> None:
    async def own(request: web.Request) -> web.Response:
        return web.json_response({"mine": True})

    shop = web.Application()
    shop.router.add_get("/orders", own)
    setup(
        shop,
        workflows=WORKFLOWS,
        feedback_store=MemoryFeedbackStore(),
        prefix="/wf",
        public_url="https://shop.example.com/wf",
    )
    async with serving(shop) as client:
        assert (await client.get("/orders", headers={"Host": ATTACKER})).status == 200  # not ours to judge
        assert (await client.get("/wf/api/runs", headers={"Host": ATTACKER})).status == 421
        assert (await client.get("/wf/api/runs", headers={"Host": "shop.example.com"})).status == 200


@pytest.mark.parametrize(
    "bad", ["example.com", ["https://example.com"], ["example.com:8080"], ["a/b"], [""], [3], [".10.0.0.1"]]
)
def test_allowed_hosts_are_checked(bad: Any) -> None:
    with pytest.raises(ValueError, match="allowed_hosts"):
        create_app(feedback_store=MemoryFeedbackStore(), allowed_hosts=bad)


def test_a_server_on_every_interface_answers_to_the_machines_name() -> None:
    assert served_names("0.0.0.0") == [socket.gethostname().lower()]
    assert served_names("::") == [socket.gethostname().lower()]
    assert served_names("wf.internal") == ["wf.internal"]
    assert served_names("127.0.0.1") == [] and served_names("::1") == []


@asynccontextmanager
async def served(capsys: pytest.CaptureFixture[str], *argv: str) -> AsyncIterator[str]:
    """`python -m graflow_async serve ARGV` in this process; yields its base URL."""
    parser = argparse.ArgumentParser()
    add_serve_command(parser.add_subparsers(dest="command"))
    server = asyncio.create_task(serve(parser.parse_args(["serve", "--port", "0", *argv])))
    try:
        output = ""
        async with asyncio.timeout(5):
            while not (found := re.search(r"http://127\.0\.0\.1:(\d+)/", output)):
                output += capsys.readouterr().out
                await asyncio.sleep(0.02)
        yield f"http://127.0.0.1:{found.group(1)}"
    finally:
        server.cancel()
        with pytest.raises(asyncio.CancelledError):
            await server


async def test_serve_without_a_token_refuses_foreign_hosts_and_takes_allowed_ones(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("GRAFLOW_AUTH_TOKEN", raising=False)
    async with (
        served(capsys, "--workflow", "web_flows:hello", "--allowed-host", "wf.internal") as base,
        aiohttp.ClientSession() as http,
    ):
        for host, status in ((ATTACKER, 421), ("wf.internal", 202), ("localhost", 202)):
            async with http.post(f"{base}/api/runs", json={"workflow": "hello"}, headers={"Host": host}) as response:
                assert response.status == status, host
    monkeypatch.setenv("GRAFLOW_AUTH_TOKEN", TOKEN)
    async with served(capsys, "--workflow", "web_flows:hello") as base, aiohttp.ClientSession() as http:
        headers = {"Host": "wf.example.com", "Authorization": f"Bearer {TOKEN}"}
        async with http.post(f"{base}/api/runs", json={"workflow": "hello"}, headers=headers) as response:
            assert response.status == 202  # with a token, as an embedded app: any name


def test_serve_checks_allowed_hosts() -> None:
    from graflow_async.cli.main import UsageError

    parser = argparse.ArgumentParser()
    add_serve_command(parser.add_subparsers(dest="command"))
    with pytest.raises(UsageError, match="--allowed-host"):
        asyncio.run(serve(parser.parse_args(["serve", "--port", "0", "--allowed-host", "http://x"])))
