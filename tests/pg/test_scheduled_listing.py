"""Scheduled listing with two daemons on one PostgreSQL database: two OS processes run the
job loop (`fire_scheduled_listings`) against the same due listings at the same moment, and
the Taobao sandbox — served over real HTTP, so it sees every call from both — is asked to
shelve each item exactly once.

Both processes start, build their runtime and report ready; only then are the listings made
due and both released together, so the claims really race."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sys
import textwrap
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from connectors.taobao.sandbox import TaobaoSandbox
from core.catalog import ProductSpec, SkuSpec, upsert_product
from core.config import load
from core.db import create_engine, transaction, upgrade
from core.listings import pull_listings
from core.model import Listing, OutboxTask, Sku
from core.runtime import Runtime, SandboxBinding
from core.sandbox import serve

ROOT = Path(__file__).resolve().parents[2]
ITEMS = 12
ROUNDS = 25

pytestmark = [pytest.mark.pg, pytest.mark.slow]

JOB = textwrap.dedent('''
    import asyncio, json, sys

    from connectors.taobao.sandbox import TaobaoSandbox
    from core.config import load
    from core.listings import fire_scheduled_listings
    from core.runtime import Runtime, SandboxBinding


    async def main(config_path: str, base_url: str, node: str) -> None:
        config = load(config_path, check_env=False)
        # the sandbox object only lends its credentials: calls go over HTTP to base_url
        rt = Runtime(config, sandboxes={"tb": SandboxBinding(TaobaoSandbox(), base_url)},
                     node=node)
        rt.http.rate_limits = False
        await rt.sync_shops()
        print("ready", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        fired = []
        for _ in range(ROUNDS):
            fired.append(await fire_scheduled_listings(rt))
        await rt.close()
        print(json.dumps({"node": node, "fired": fired}), flush=True)


    asyncio.run(main(*sys.argv[1:]))
''').replace("ROUNDS", str(ROUNDS))


def write_config(tmp_path: Path, url: str) -> Path:
    shutil.copy(ROOT / "config" / "rules.toml", tmp_path / "rules.toml")
    path = tmp_path / "erpsync.toml"
    path.write_text(f'rules = "rules.toml"\nsecrets = "secrets.json"\n\n[database]\nurl = "{url}"\n\n'
                    '[[shops]]\nname = "tb"\nplatform = "taobao"\nsandbox = true\n',
                    encoding="utf-8")
    return path


async def test_two_processes_shelve_each_scheduled_item_once(tmp_path: Path,
                                                             pg_url: str) -> None:
    sandbox = TaobaoSandbox()  # real clock: two processes cannot share a ManualClock
    items = [sandbox.add_item(f"台灯 {i}", f"LAMP-{i}", 19900, quantity=3, on_sale=False,
                              category_id="121412004") for i in range(ITEMS)]
    config_path = write_config(tmp_path, pg_url)
    config = load(config_path, check_env=False)
    engine = create_engine(config.database_url)
    await upgrade(engine, config.database_url)
    script = tmp_path / "job.py"
    script.write_text(JOB, encoding="utf-8")
    async with serve({"tb": sandbox}) as urls:
        rt = Runtime(config, sandboxes={"tb": SandboxBinding(sandbox, urls["tb"])},
                     engine=engine, node="setup")
        rt.http.rate_limits = False
        try:
            await rt.sync_shops()
            async with transaction(rt.sessions) as session:
                for i in range(ITEMS):
                    await upsert_product(session, ProductSpec(
                        f"LAMP-{i}", f"台灯 {i}", (SkuSpec(f"LAMP-{i}", 19900),)), rt.now())
                for sku in (await session.scalars(select(Sku))).all():
                    await rt.pool.change_on_hand(session, sku.id, "MAIN", 3, kind="receipt",
                                                 reason="test", reference="test", now=rt.now())
            await pull_listings(rt, "tb", correct=False)
            async with transaction(rt.sessions) as session:
                for row in (await session.scalars(select(Listing))).all():
                    row.publish_at = rt.now() + timedelta(days=1)  # not due yet

            env = {**os.environ, "PYTHONPATH": str(ROOT)}
            processes = [await asyncio.create_subprocess_exec(
                sys.executable, str(script), str(config_path), urls["tb"], f"daemon-{n}",
                cwd=ROOT, env=env, stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
                for n in (1, 2)]
            for process in processes:
                assert process.stdout is not None
                line = await asyncio.wait_for(process.stdout.readline(), 60)
                assert line.strip() == b"ready", line
            assert sandbox.calls("taobao.item.update.listing") == []

            async with transaction(rt.sessions) as session:  # due now, for both at once
                for row in (await session.scalars(select(Listing))).all():
                    row.publish_at = rt.now() - timedelta(seconds=1)
            for process in processes:
                assert process.stdin is not None
                process.stdin.write(b"go\n")
                await process.stdin.drain()
            results = []
            for process in processes:
                out, err = await asyncio.wait_for(process.communicate(), 120)
                assert process.returncode == 0, err.decode()[-3000:]
                results.append(json.loads(out.decode().strip().splitlines()[-1]))

            fired = [sum(r["fired"]) for r in results]
            assert sum(fired) == ITEMS, results  # every item claimed, each by one process
            assert all(len(r["fired"]) == ROUNDS for r in results)  # both ran the loop
            shelved = [request.form()["num_iid"]
                       for request in sandbox.calls("taobao.item.update.listing")]
            assert sorted(shelved) == sorted(i.item_id for i in items)  # once each
            assert all(i.on_sale for i in items)
            async with rt.sessions() as session:
                assert (await session.scalars(select(Listing.publish_at))).all() == [None] * ITEMS
                tasks = (await session.scalars(select(OutboxTask).where(
                    OutboxTask.kind == "shelve"))).all()
                assert [(t.state, t.sent_version == t.version) for t in tasks] == [
                    ("done", True)] * ITEMS
        finally:
            await rt.close()
