"""The operator's web console (/console) in a real headless Chromium (Debian's chromium and
chromedriver, driven by Selenium over WebDriver), plus its session rules over plain HTTP: sign in,
send from the form and watch the output stream, both nodes Success, filter the history, cancel,
run again on the failed nodes only, the nodes page, and a read-only key that sees no Send and is
refused when it posts anyway. Screenshots of each page go to tests/e2e/.screenshots/ (or
$FLEETRUN_SCREENSHOTS)."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.common.exceptions import (
    NoSuchElementException,
    StaleElementReferenceException,
    TimeoutException,
)
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select, WebDriverWait

from conftest import DOCUMENT, REPO_ROOT, TEST_STORE, poll, start_server, store_args
from test_auth import admin

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
SCREENSHOTS = Path(os.environ.get("FLEETRUN_SCREENSHOTS", REPO_ROOT / "tests/e2e/.screenshots"))
WAIT = 30


# --------------------------------------------------------------------------- HTTP helpers


def http(endpoint: str, path: str, body: bytes | None = None, headers: dict | None = None,
         method: str = "POST") -> tuple[int, dict, dict]:
    """(status, lower-cased headers with every Set-Cookie joined by \\n, JSON body)."""
    request = urllib.request.Request(endpoint + path, data=body, headers=headers or {}, method=method)
    try:
        with urllib.request.urlopen(request, timeout=10) as r:
            status, head, payload = r.status, r.headers, r.read()
    except urllib.error.HTTPError as e:
        status, head, payload = e.code, e.headers, e.read()
    lowered = {k.lower(): v for k, v in head.items()}
    lowered["set-cookie"] = "\n".join(head.get_all("Set-Cookie") or [])
    return status, lowered, json.loads(payload or b"{}")


def sign_in_http(endpoint: str, creds: dict) -> tuple[int, dict, dict]:
    body = json.dumps({"AccessKeyId": creds["AWS_ACCESS_KEY_ID"],
                       "SecretAccessKey": creds["AWS_SECRET_ACCESS_KEY"]}).encode()
    return http(endpoint, "/console/session", body, {"Content-Type": "application/json"})


def session_of(set_cookie: str) -> str:
    """The `name=value` of the session cookie in a Set-Cookie header."""
    return set_cookie.split(";", 1)[0]


def console_call(endpoint: str, cookie: str, csrf: str | None, target: str, body: dict):
    headers = {"Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": target,
               "Cookie": cookie}
    if csrf is not None:
        headers["X-Fleetrun-Csrf"] = csrf
    return http(endpoint, "/console/api", json.dumps(body).encode(), headers)


# --------------------------------------------------------------------------- the browser


def chromium_options(user_data_dir: str) -> webdriver.ChromeOptions:
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--window-size=1366,900",
                f"--user-data-dir={user_data_dir}"):
        options.add_argument(arg)
    return options


class Console:
    """One headless Chromium on the fleet's console."""

    def __init__(self, endpoint: str):
        assert os.access(CHROMEDRIVER, os.X_OK), (
            "chromium-driver is needed for the console tests: scripts/e2e.sh installs it "
            "(apt-get install chromium chromium-driver)")
        self.endpoint = endpoint
        self.profile = tempfile.mkdtemp(prefix="fleetrun-chromium-")
        # Service(executable_path=…): Selenium Manager never looks for (or downloads) a driver.
        self.driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER),
                                       options=chromium_options(self.profile))
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)

    def quit(self) -> None:
        self.driver.quit()
        shutil.rmtree(self.profile, ignore_errors=True)

    # ---- finding things

    def wait(self, what: str, fn, timeout: float = WAIT):
        def attempt(_):
            try:
                return fn()
            except (NoSuchElementException, StaleElementReferenceException):
                return None
        try:
            return WebDriverWait(self.driver, timeout, poll_frequency=0.1).until(attempt, what)
        except TimeoutException:
            self.screenshot("failed-" + "".join(ch if ch.isalnum() else "-" for ch in what)[:60])
            raise AssertionError(
                f"timed out after {timeout}s waiting for {what}; the page said:\n"
                f"{self.driver.find_element(By.TAG_NAME, 'body').text[:3000]}") from None

    def find(self, css: str):
        return self.driver.find_element(By.CSS_SELECTOR, css)

    def finds(self, css: str):
        return self.driver.find_elements(By.CSS_SELECTOR, css)

    def shown(self, css: str) -> bool:
        return any(e.is_displayed() for e in self.finds(css))

    def text(self, css: str) -> str:
        return self.find(css).text

    def open(self, route: str) -> None:
        self.driver.get(f"{self.endpoint}/console#{route}")

    def screenshot(self, name: str, full: bool = False) -> None:
        """Saves the window (`full`: the whole page, up to 1,800 pixels high)."""
        if not full:
            self.driver.save_screenshot(str(SCREENSHOTS / f"{name}.png"))
            return
        height = self.driver.execute_script("return document.documentElement.scrollHeight")
        self.driver.set_window_size(1366, min(max(height + 140, 900), 1800))
        try:
            self.driver.save_screenshot(str(SCREENSHOTS / f"{name}.png"))
        finally:
            self.driver.set_window_size(1366, 900)

    # ---- signing in

    def sign_in(self, creds: dict) -> None:
        self.open("/commands")
        self.wait("the sign-in form", lambda: self.find("#access-key-id"))
        self.fill("#access-key-id", creds["AWS_ACCESS_KEY_ID"])
        self.fill("#secret-access-key", creds["AWS_SECRET_ACCESS_KEY"])
        self.find("#sign-in button[type=submit]").click()

    def sign_out(self) -> None:
        self.find("#sign-out").click()
        self.wait("the sign-in form", lambda: self.find("#access-key-id"))

    def fill(self, css: str, value: str) -> None:
        el = self.find(css)
        el.clear()
        el.send_keys(value)

    # ---- pages

    def command_id(self) -> str:
        """The command the page shows (`#/command/<id>`)."""
        url = self.wait("a command page", lambda: "#/command/" in self.driver.current_url
                        and self.driver.current_url)
        return url.rsplit("/", 1)[1]

    def invocation_status(self, node: str) -> str:
        return self.text(f'#invocations tr[data-instance="{node}"] td:nth-child(3)')


@pytest.fixture(scope="module")
def console(fleet):
    c = Console(fleet.endpoint)
    try:
        c.sign_in(fleet.credentials)
        c.wait("the commands page", lambda: c.find("#commands"))
        yield c
    finally:
        c.quit()


def wait_command_page_status(console: Console, statuses: set[str]) -> str:
    return console.wait(f"command status in {statuses}",
                        lambda: console.text("#command-status") in statuses
                        and console.text("#command-status"))


# --------------------------------------------------------------------------- session rules


def test_sign_in_sets_a_strict_http_only_cookie_and_a_wrong_secret_is_refused(fleet):
    creds = fleet.credentials
    wrong = dict(creds, AWS_SECRET_ACCESS_KEY=creds["AWS_SECRET_ACCESS_KEY"][:-1] + "x")
    status, head, body = sign_in_http(fleet.endpoint, wrong)
    assert (status, body["__type"]) == (401, "UnrecognizedClientException"), body
    assert head["set-cookie"] == ""
    status, head, body = sign_in_http(
        fleet.endpoint, dict(creds, AWS_ACCESS_KEY_ID="AKIA0000000000000000"))
    assert (status, body["__type"]) == (401, "UnrecognizedClientException"), body

    status, head, who = sign_in_http(fleet.endpoint, creds)
    assert status == 200, who
    assert who["AccessKeyId"] == creds["AWS_ACCESS_KEY_ID"] and who["CanSendCommand"] is True
    flags = [f.strip() for f in head["set-cookie"].split(";")]
    assert flags[0].startswith("fleetrun_session=")
    assert "HttpOnly" in flags and "SameSite=Strict" in flags and "Path=/console" in flags
    assert "Secure" not in flags  # plain HTTP on loopback; TLS servers add it
    # A sign-in from a cross-site form (not JSON) is refused.
    status, _, body = http(fleet.endpoint, "/console/session",
                           b"AccessKeyId=x&SecretAccessKey=y",
                           {"Content-Type": "application/x-www-form-urlencoded"})
    assert (status, body["__type"]) == (400, "SerializationException")


def test_every_post_needs_the_sessions_csrf_token(fleet):
    status, head, who = sign_in_http(fleet.endpoint, fleet.credentials)
    cookie = session_of(head["set-cookie"])
    target = "AmazonSSM.ListCommands"
    status, _, body = console_call(fleet.endpoint, cookie, None, target, {"MaxResults": 1})
    assert (status, body["__type"]) == (403, "InvalidCsrfTokenException"), body
    status, _, body = console_call(fleet.endpoint, cookie, "not-the-token", target, {})
    assert (status, body["__type"]) == (403, "InvalidCsrfTokenException"), body
    # Another session's token does not fit this one.
    _, other_head, other = sign_in_http(fleet.endpoint, fleet.credentials)
    status, _, body = console_call(fleet.endpoint, cookie, other["CsrfToken"], target, {})
    assert status == 403, body
    status, head, body = console_call(fleet.endpoint, cookie, who["CsrfToken"], target,
                                      {"MaxResults": 1})
    assert status == 200 and "Commands" in body, body
    assert head["x-amzn-requestid"]
    # No cookie at all, or a forged one: not signed in.
    status, _, body = console_call(fleet.endpoint, "", who["CsrfToken"], target, {})
    assert (status, body["__type"]) == (401, "MissingAuthenticationTokenException")
    status, _, body = console_call(fleet.endpoint, cookie[:-2] + "AA", who["CsrfToken"], target, {})
    assert status == 401, body
    # The API's own errors come back unchanged.
    status, _, body = console_call(fleet.endpoint, cookie, who["CsrfToken"],
                                   "AmazonSSM.GetCommandInvocation",
                                   {"CommandId": str(uuid.uuid4()), "InstanceId": "mi-00000000000000000"})
    assert status == 400 and body["__type"] == "InvocationDoesNotExist", body
    # Signing out removes the cookie (and needs the token too).
    status, _, _ = http(fleet.endpoint, "/console/session/end", b"", {"Cookie": cookie})
    assert status == 403
    status, head, _ = http(fleet.endpoint, "/console/session/end", b"",
                           {"Cookie": cookie, "X-Fleetrun-Csrf": who["CsrfToken"]})
    assert status == 200 and "Max-Age=0" in head["set-cookie"]


def test_assets_are_built_in_with_a_strict_content_security_policy(fleet):
    for path, kind in (("/console", "text/html"), ("/console/console.js", "text/javascript"),
                       ("/console/console.css", "text/css")):
        status, head, _ = (lambda r: (r.status, {k.lower(): v for k, v in r.headers.items()}, None))(
            urllib.request.urlopen(fleet.endpoint + path, timeout=10))
        assert status == 200 and head["content-type"].startswith(kind), (path, head)
        assert "script-src 'self'" in head["content-security-policy"]
        assert "unsafe-inline" not in head["content-security-policy"]
        assert head["x-content-type-options"] == "nosniff"
        assert head["etag"] and head["cache-control"] == "no-cache"


# --------------------------------------------------------------------------- in the browser


def test_a_wrong_secret_shows_the_error_in_the_page(fleet):
    c = Console(fleet.endpoint)
    try:
        c.sign_in(dict(fleet.credentials, AWS_SECRET_ACCESS_KEY="not-the-secret"))
        c.wait("the sign-in error", lambda: c.shown("#error") and c.text("#error"))
        assert "UnrecognizedClientException" in c.text("#error")
        assert not c.shown("#nav")
        c.screenshot("sign-in")
    finally:
        c.quit()


def test_send_from_the_form_streams_live_output_and_both_nodes_succeed(fleet, console, two_agents):
    a, b = (agent.instance_id for agent in two_agents)
    console.open("/send")
    console.wait("the send form", lambda: console.find("#p-commands"))
    assert Select(console.find("#s-document")).first_selected_option.text == DOCUMENT
    console.fill("#p-commands", "for i in 1 2 3 4 5; do echo line$i; sleep 1; done")
    for node in (a, b):
        console.find(f'#s-nodes input[value="{node}"]').click()
    console.fill("#s-comment", "console e2e: live output")
    console.screenshot("send", full=True)
    sent_at = time.monotonic()
    console.find("#s-submit").click()
    command_id = console.command_id()
    # line1 shows while the command still runs (its script takes five seconds).
    console.wait("line1 in the live output",
                 lambda: "line1" in console.text("#output pre.stdout"), timeout=20)
    latency = time.monotonic() - sent_at
    assert fleet.command(command_id)["Status"] in ("Pending", "InProgress")
    assert "line5" not in console.text("#output pre.stdout")
    print(f"\nconsole: line1 on the page {latency:.2f}s after Send (script prints it at once)")
    console.screenshot("command-running", full=True)
    for node in (a, b):
        console.wait(f"{node} Success", lambda node=node: console.invocation_status(node) == "Success")
    assert wait_command_page_status(console, {"Success"}) == "Success"
    console.wait("the whole output", lambda: "line5" in console.text("#output pre.stdout"))
    assert console.text("#output pre.stdout").split() == [f"line{i}" for i in range(1, 6)]
    for node in (a, b):
        assert console.text(f'#invocations tr[data-instance="{node}"] .exit-code') == "0"
    assert console.text("#command-counts").startswith("2 of 2 done, 0 errors")
    assert console.find("#download-output").is_enabled()
    # What was sent, as sent.
    summary = console.text("#command-summary")
    assert DOCUMENT in summary and "console e2e: live output" in summary and a in summary
    sent = fleet.command(command_id)
    assert sorted(sent["InstanceIds"]) == sorted([a, b])
    assert sent["Parameters"]["commands"] == ["for i in 1 2 3 4 5; do echo line$i; sleep 1; done"]
    # The other node's output, once asked for.
    console.find(f'#invocations button[data-instance="{b}"]').click()
    console.wait("the second node's output", lambda: "line5" in console.text("#output pre.stdout")
                 and b in console.text("#output-title"))
    console.screenshot("command", full=True)


def test_the_output_of_a_finished_invocation_is_all_there(fleet, console, node):
    # 3,000 lines (~50 KB): more than GetCommandInvocation's 24,000 characters.
    command_id = fleet.run(node, ["seq -f 'output line %g' 1 3000"])
    fleet.wait_invocation(command_id, node)
    console.open(f"/command/{command_id}")
    console.wait("all 3,000 lines", lambda: console.driver.execute_script(
        "const p = document.querySelector('#output pre.stdout');"
        "return p && p.textContent.trimEnd().split('\\n').length === 3000"
        " && p.textContent.includes('output line 3000');"))
    console.wait("the output complete", lambda: console.text("#output-state") == "Complete output.")


def test_history_filters_by_status_and_document(fleet, console, node):
    name = f"console-e2e-{uuid.uuid4().hex[:8]}"
    fleet.ssm.create_document(Name=name, DocumentType="Command", Content=json.dumps({
        "schemaVersion": "2.2", "description": "console e2e",
        "mainSteps": [{"action": "aws:runShellScript", "name": "hello",
                       "inputs": {"runCommand": ["echo hello"]}}]}))
    by_doc = fleet.ssm.send_command(InstanceIds=[node], DocumentName=name)["Command"]["CommandId"]
    failed = fleet.run(node, ["exit 3"], Comment="console e2e: fails")
    fleet.wait_command(by_doc)
    fleet.wait_command(failed)

    console.open("/commands")
    console.wait("the filters", lambda: console.find("#f-document"))
    console.fill("#f-document", name)
    console.find("#command-filters button[type=submit]").click()
    console.wait("only the document's command", lambda: [
        r.text for r in console.finds("#commands tbody td:nth-child(1)")] == [by_doc])
    assert console.text("#commands tbody td:nth-child(2)") == name
    assert f"DocumentName={name}" in console.driver.current_url

    console.open("/commands")
    console.wait("the filters", lambda: console.find("#f-status"))
    Select(console.find("#f-status")).select_by_value("Failed")
    console.find("#command-filters button[type=submit]").click()
    console.wait("failed commands only", lambda: "Status=Failed" in console.driver.current_url
                 and failed in [r.text for r in console.finds("#commands tbody td:nth-child(1)")])
    statuses = {r.text for r in console.finds("#commands tbody td:nth-child(3)")}
    assert statuses == {"Failed"}, statuses
    console.screenshot("commands-filtered")

    started = time.monotonic()
    console.open("/commands")
    console.wait("the history", lambda: by_doc in console.text("#commands"))
    print(f"\nconsole: Commands page loaded and rendered in {time.monotonic() - started:.2f}s")
    ids = [r.text for r in console.finds("#commands tbody td:nth-child(1)")]
    assert ids.index(failed) < ids.index(by_doc), "newest first"
    console.screenshot("commands")


def test_history_pages_with_next_and_previous(fleet, console, node):
    marker = f"console paging {uuid.uuid4().hex[:6]}"
    # The filter keeps the page small: 50 a page, so 52 of this document's commands need two.
    ids = [fleet.run(node, ["true"], Comment=marker) for _ in range(52)]
    console.open(f"/commands?InstanceId={node}")
    console.wait("a full first page", lambda: len(console.finds("#commands tbody tr")) == 50)
    first = [r.text for r in console.finds("#commands tbody td:nth-child(1)")]
    assert first[0] == ids[-1]
    console.find("#page-next").click()
    console.wait("page 2", lambda: console.text("#commands-status").startswith("Page 2"))
    second = [r.text for r in console.finds("#commands tbody td:nth-child(1)")]
    assert not set(first) & set(second)
    console.find("#page-prev").click()
    console.wait("page 1 again", lambda: console.text("#commands-status").startswith("Page 1"))
    assert [r.text for r in console.finds("#commands tbody td:nth-child(1)")] == first


def test_cancel_a_running_sleep(fleet, console, node):
    command_id = fleet.run(node, ["sleep 600"], Comment="console e2e: cancel me")
    fleet.wait_invocation(command_id, node, statuses={"InProgress"})
    console.open(f"/command/{command_id}")
    console.wait("the Cancel button", lambda: console.find("#cancel"))
    console.find("#cancel").click()
    assert wait_command_page_status(console, {"Cancelled"}) == "Cancelled"
    assert fleet.command(command_id)["Status"] == "Cancelled"
    console.wait("no Cancel once final", lambda: not console.finds("#cancel"))


def test_run_again_on_the_nodes_that_failed_only(fleet, console, two_agents):
    a, b = (agent.instance_id for agent in two_agents)
    # Fails on b only.
    command_id = fleet.send([a, b], [f'test "$AWS_SSM_INSTANCE_ID" = {a}'],
                            Comment="console e2e: fails on one", MaxErrors="1")["CommandId"]
    fleet.wait_command(command_id)
    console.open(f"/command/{command_id}")
    console.wait("Run again on the failed node", lambda: console.find("#rerun-failed"))
    assert "1 node" in console.text("#rerun-failed")
    assert console.invocation_status(b) == "Failed"
    console.screenshot("command-failed")
    console.find("#rerun-failed").click()
    console.wait("the new command's page",
                 lambda: command_id not in console.driver.current_url
                 and "#/command/" in console.driver.current_url)
    again = console.command_id()
    sent = fleet.command(again)
    assert sent["InstanceIds"] == [b], sent
    original = fleet.command(command_id)
    for key in ("DocumentName", "Parameters", "MaxConcurrency", "MaxErrors", "Comment", "TimeoutSeconds"):
        assert sent[key] == original[key], key
    assert fleet.wait_command(again)["Status"] == "Failed"


def test_nodes_page_with_tag_filter_and_a_nodes_commands(fleet, console, two_agents, node):
    a, b = (agent.instance_id for agent in two_agents)
    role = f"console-{uuid.uuid4().hex[:6]}"
    fleet.ssm.add_tags_to_resource(ResourceType="ManagedInstance", ResourceId=a,
                                   Tags=[{"Key": "console-role", "Value": role}])
    console.open("/nodes")
    console.wait("every node", lambda: {a, b, node} <= {
        r.get_attribute("data-instance") for r in console.finds("#nodes tbody tr")})
    assert "Online" in console.text(f'#nodes tr[data-instance="{a}"]')
    console.wait("the tag", lambda: f"console-role={role}" in console.text(f'#nodes tr[data-instance="{a}"]'))
    console.screenshot("nodes")
    console.fill("#f-tag-key", "console-role")
    console.fill("#f-tag-value", role)
    console.find("#node-filters button[type=submit]").click()
    console.wait("only the tagged node", lambda: [
        r.get_attribute("data-instance") for r in console.finds("#nodes tbody tr")] == [a])
    console.find(f'#nodes tr[data-instance="{a}"] a').click()
    console.wait("the node's commands", lambda: console.finds("#node-commands tbody tr td a"))
    listed = [r.text for r in console.finds("#node-commands tbody td:nth-child(1)")]
    assert listed and all(fleet.ssm.list_command_invocations(CommandId=c, InstanceId=a)
                          ["CommandInvocations"] for c in listed[:3])
    console.screenshot("node")


def test_a_read_only_key_sees_no_send_and_is_refused_when_it_posts(fleet, console, node):
    made = admin(fleet, "create-key", "--user", f"console-ro-{uuid.uuid4().hex[:6]}",
                 "--policy", "ReadOnly")["AccessKey"]
    ro = {"AWS_ACCESS_KEY_ID": made["AccessKeyId"], "AWS_SECRET_ACCESS_KEY": made["SecretAccessKey"]}
    running = fleet.run(node, ["sleep 30"], Comment="console e2e: read-only view")
    try:
        console.sign_out()
        console.sign_in(ro)
        console.wait("the commands page", lambda: console.find("#commands"))
        assert not console.shown("#nav-send")
        assert console.shown("#nav")
        console.open(f"/command/{running}")
        console.wait("the command", lambda: running in console.text("h1")
                     and console.text("#command-status") in ("Pending", "InProgress"))
        time.sleep(1.5)  # a poll or two: still no buttons
        assert not console.finds("#cancel") and not console.finds("#rerun-all")
        console.open("/send")
        console.wait("the refusal", lambda: "may not send" in console.text("main"))

        # Posting anyway, with the read-only session's own cookie and token: the API refuses.
        status, head, who = sign_in_http(fleet.endpoint, ro)
        assert status == 200 and who["CanSendCommand"] is False and who["CanCancelCommand"] is False
        cookie = session_of(head["set-cookie"])
        status, _, body = console_call(fleet.endpoint, cookie, who["CsrfToken"], "AmazonSSM.SendCommand", {
            "DocumentName": DOCUMENT, "InstanceIds": [node],
            "Parameters": {"commands": ["echo should not run"]}})
        assert (status, body["__type"]) == (400, "AccessDeniedException"), body
        status, _, body = console_call(fleet.endpoint, cookie, who["CsrfToken"],
                                       "AmazonSSM.CancelCommand", {"CommandId": running})
        assert (status, body["__type"]) == (400, "AccessDeniedException"), body
        assert fleet.command(running)["Status"] in ("Pending", "InProgress")
        # Reads work.
        status, _, body = console_call(fleet.endpoint, cookie, who["CsrfToken"],
                                       "AmazonSSM.ListCommands", {"CommandId": running})
        assert status == 200 and body["Commands"][0]["CommandId"] == running

        # A key disabled after sign-in stops working.
        status, _, _ = fleet.raw("FleetrunAdmin.UpdateAccessKey", json.dumps(
            {"AccessKeyId": made["AccessKeyId"], "Status": "Inactive"}).encode())
        assert status == 200
        poll("the disabled key's session refused", lambda: console_call(
            fleet.endpoint, cookie, who["CsrfToken"], "AmazonSSM.ListCommands", {})[0] == 401, 10)
    finally:
        fleet.ssm.cancel_command(CommandId=running)
        console.open("/commands")
        if console.finds("#sign-out") and console.shown("#who"):
            console.sign_out()
        console.sign_in(fleet.credentials)
        console.wait("the commands page", lambda: console.find("#commands"))


def axe_violations(console: Console) -> list[str]:
    """The serious and critical accessibility violations axe-core finds on the current page."""
    from axe_selenium_python import Axe

    axe = Axe(console.driver)
    axe.inject()
    results = axe.run()
    return [f"{v['id']} ({v['impact']}): {v['help']}: "
            + "; ".join(n["target"][0] for n in v["nodes"][:5])
            for v in results["violations"] if v["impact"] in ("serious", "critical")]


def test_every_page_passes_axe_core(fleet, console, node):
    """Labels, names, contrast, ARIA use: axe-core's rules on each page, in the real browser."""
    command_id = fleet.run(node, ["echo accessible"])
    fleet.wait_command(command_id)
    pages = {
        "/commands": "#commands tbody tr",
        f"/command/{command_id}": "#output pre",
        "/nodes": "#nodes tbody tr",
        f"/node/{node}": "#node-commands tbody tr",
        "/send": "#p-commands",
    }
    found = {}
    for route, ready in pages.items():
        console.open(route)
        console.wait(f"{route} to render", lambda ready=ready: console.find(ready))
        found[route] = axe_violations(console)
    console.sign_out()
    found["sign-in"] = axe_violations(console)
    console.sign_in(fleet.credentials)
    console.wait("the commands page", lambda: console.find("#commands"))
    assert not any(found.values()), json.dumps(found, indent=1)


@pytest.mark.skipif(TEST_STORE != "postgres", reason="replicas need FLEETRUN_TEST_STORE=postgres")
def test_a_session_made_on_one_replica_works_on_another(fleet, tmp_path):
    """Stateless sessions: the cookie is signed with a key every replica reads from the store."""
    logs = tmp_path / "logs"
    logs.mkdir()
    store = store_args(tmp_path / "shared")[1]
    a = start_server(fleet.binary, tmp_path / "a", logs, "console-a", local_node=False, store=store)
    try:
        b = start_server(fleet.binary, tmp_path / "b", logs, "console-b", local_node=False,
                         store=store, admin=a.credentials)
        try:
            status, head, who = sign_in_http(a.endpoint, a.credentials)
            assert status == 200, who
            cookie = session_of(head["set-cookie"])
            status, _, body = console_call(b.endpoint, cookie, who["CsrfToken"],
                                           "AmazonSSM.ListCommands", {})
            assert status == 200 and body["Commands"] == [], body
            status, _, again = http(b.endpoint, "/console/api/whoami", None, {"Cookie": cookie},
                                    method="GET")
            assert status == 200 and again["CsrfToken"] == who["CsrfToken"], again
        finally:
            b.proc.stop()
    finally:
        a.proc.stop()
