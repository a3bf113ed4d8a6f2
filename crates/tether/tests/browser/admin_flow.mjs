// The admin's path through the UI in a real browser (issue 3, DESIGN §1): sign in, switch
// Auto-populate on, preview and run Pull User Data with the right field, read a
// duplicate_accounts explanation, set an External ID by hand. A full-page screenshot of every
// screen goes to $TETHER_SCREENSHOTS (the README shows them).
//
// Run by crates/tether/tests/browser.rs against `tether serve --demo`; reads
//   TETHER_URL             the server, e.g. http://127.0.0.1:40123
//   TETHER_ADMIN_PASSWORD  the demo admin's password (the user is `admin`)
//   TETHER_CHROMIUM        the chromium binary (Debian's /usr/bin/chromium)
//   TETHER_SCREENSHOTS     where the PNG files go
// and needs NODE_PATH pointing at node_modules with playwright-core (scripts/peers/install).
// Exits 0 when every check passed; otherwise prints what failed, the page's URL and text,
// and saves failure.png. The parts it shares with signin_flow.mjs are in common.mjs.
//
// No fixed sleeps: every wait is for a selector, a URL or a text, with generous timeouts
// (the machine may have two busy cores).

import { check, flowKit, rows } from "./common.mjs";

const { step, watch, newContext, shoot, open, signInAsAdmin, run } = flowKit("admin_flow");

const RUN_WAIT = 60_000; // a pull run to succeed (the contract's bound)
// An Atlassian-style account id typed by hand; held by no demo user.
const MANUAL_EXTERNAL_ID = "557058:0b1e2c3d-4f5a-4b6c-8d7e-9f0a1b2c3d4e";
const MANUAL_REASON = "Confirmed with the user by phone: new account after a name change";

function number(text) {
  const digits = String(text).replace(/[^0-9]/g, "");
  return digits === "" ? NaN : Number(digits);
}

// The dashboard's situation tiles: { situation name: count }.
async function dashboardCounts(page) {
  await page.waitForSelector("a.tile[href*='situation=']");
  const tiles = await page.$$eval("a.tile[href*='situation=']", (links) =>
    links.map((a) => [new URL(a.href).searchParams.get("situation"), a.innerText]),
  );
  const counts = {};
  for (const [name, text] of tiles) counts[name] = number(text.split("\n")[0]);
  return counts;
}

async function textOf(page, selector) {
  return (await page.locator(selector).first().innerText()).trim();
}

// The first user of a situation: opens the filtered list and returns the first user's path.
async function firstUserIn(page, situation) {
  await open(page, `/users?situation=${situation}`);
  const link = page.locator("table#users tbody tr td:first-child a[href^='/users/']").first();
  await link.waitFor();
  return link.getAttribute("href");
}

async function flow(browser) {
  const context = await newContext(browser);
  const page = await context.newPage();
  watch(page);

  // --- Sign in -------------------------------------------------------------------------
  step("sign in");
  await open(page, "/");
  check(new URL(page.url()).pathname === "/login", `/ without a session went to ${page.url()}, not /login`);
  await page.waitForSelector("input[name=username]");
  await shoot(page, "01-login");
  await signInAsAdmin(page);

  // --- Dashboard, before ---------------------------------------------------------------
  step("dashboard before the pull");
  await page.waitForSelector("svg.chart");
  const before = await dashboardCounts(page);
  step(`situations before: ${JSON.stringify(before)}`);
  check(before.missing_field > 0, `the demo starts with users in missing_field; dashboard shows ${JSON.stringify(before)}`);
  await shoot(page, "02-dashboard-before");

  // --- Settings › Security: Auto-populate account ID = Yes -----------------------------
  step("settings: auto-populate on");
  await Promise.all([
    page.waitForURL((url) => url.pathname === "/settings/security"),
    page.getByRole("link", { name: "Settings › Security" }).click(),
  ]);
  const form = page.locator("form#security-settings");
  await form.waitFor();
  for (const name of ["auto_populate", "require_verified_email", "link_inactive"]) {
    check((await form.locator(`select[name=${name}]`).count()) === 1, `form#security-settings has no select[name=${name}]`);
  }
  check((await form.locator("input[name=mass_change_threshold_percent]").count()) === 1, "form#security-settings has no input[name=mass_change_threshold_percent]");
  const autoPopulate = form.getByLabel("Auto-populate account ID");
  check((await autoPopulate.getAttribute("name")) === "auto_populate", "the label 'Auto-populate account ID' is not on select[name=auto_populate]");
  await autoPopulate.selectOption("yes");
  // Forms may post and redirect or swap a fragment (htmx): wait for the result, not a load.
  await form.getByRole("button", { name: "Save" }).click();
  await page.getByText("Settings saved.").waitFor();
  check(
    (await page.locator("form#security-settings select[name=auto_populate]").inputValue()) === "yes",
    "after saving, Auto-populate account ID does not show Yes",
  );
  await shoot(page, "03-settings-security-saved");

  // --- Sources › demo-directory › Pull User Data: preview -------------------------------
  step("sources");
  await Promise.all([
    page.waitForURL((url) => url.pathname === "/sources"),
    page.locator("header nav a[href='/sources']").click(),
  ]);
  const sourceLink = page.locator("a[href='/sources/demo-directory']").first();
  await sourceLink.waitFor();
  await shoot(page, "04-sources");
  await Promise.all([
    page.waitForURL((url) => url.pathname === "/sources/demo-directory"),
    sourceLink.click(),
  ]);
  await page.getByRole("heading", { level: 2, name: "Pull User Data" }).waitFor();
  const pull = page.locator("form#pull-user-data");
  const field = pull.getByLabel("External ID field sync");
  check((await field.getAttribute("name")) === "external_id_field", "the label 'External ID field sync' is not on select[name=external_id_field]");
  const options = await field.locator("option").evaluateAll((os) => os.map((o) => o.value));
  for (const wanted of ["account_id", "username", "key", "email"]) {
    check(options.includes(wanted), `External ID field sync has no option ${wanted} (has ${options.join(", ")})`);
  }
  const startField = await field.inputValue();
  check(startField === "username", `the demo source should start on the field username (the classic mistake), shows ${startField}`);
  await field.selectOption("account_id");
  await shoot(page, "05-pull-user-data");

  step("pull user data: preview");
  await pull.locator("button[name=action][value=preview]").click();
  const plan = page.locator("#plan");
  await plan.waitFor();
  const planText = await plan.innerText();
  check(planText.includes("new_link"), `the plan #plan does not mention new_link:\n${planText}`);
  const wouldWrite = (await page.locator("body").innerText()).match(/([\d,]+) External IDs? would be written/);
  check(wouldWrite, "the preview does not say 'N External IDs would be written'");
  const planned = number(wouldWrite[1]);
  check(planned > 0, `the preview would write ${planned} External IDs; the demo should link most users with account_id`);
  step(`preview: ${planned} External IDs would be written`);
  await shoot(page, "06-pull-preview");

  // Nothing was written: the dashboard, in a second tab, shows the same counts.
  const side = await context.newPage();
  watch(side);
  await open(side, "/");
  const afterPreview = await dashboardCounts(side);
  check(
    JSON.stringify(afterPreview) === JSON.stringify(before),
    `the preview changed the dashboard: before ${JSON.stringify(before)}, after ${JSON.stringify(afterPreview)}`,
  );
  await side.close();

  // --- Run -----------------------------------------------------------------------------
  step("pull user data: run");
  const runForm = page.locator("form#pull-user-data");
  const runField = runForm.locator("select[name=external_id_field]");
  if ((await runField.inputValue()) !== "account_id") await runField.selectOption("account_id");
  // Runs already listed on this page are not the one started here.
  await page.$$eval("[data-run-state]", (els) => els.forEach((e) => e.setAttribute("data-flow-seen", "")));
  await runForm.locator("button[name=action][value=run]").click();
  // Run either reconciles and answers with the result, or starts a background job and shows
  // its page with live progress; a job held by the mass-change safeguard (the demo links far
  // more than 20% of its users) waits for "Approve and apply". The state is read from
  // data-run-state (the UI contract) or, on a job page without it, from the state badge of
  // #job-progress.
  const ended = (states) =>
    page
      .locator(
        states
          .map((s) => `[data-run-state='${s}']:not([data-flow-seen]), #job-progress .badge:text-is("${s}")`)
          .join(", "),
      )
      .first();
  const stateOf = async (element) => (await element.getAttribute("data-run-state")) ?? (await element.innerText()).trim();
  let state = ended(["succeeded", "failed", "cancelled", "awaiting_approval"]);
  await state.waitFor({ timeout: RUN_WAIT });
  if ((await stateOf(state)) === "awaiting_approval") {
    step("run held by the mass-change safeguard: approving");
    await page.getByText("mass-change safeguard").first().waitFor();
    await shoot(page, "06a-pull-held-for-approval");
    await page.$$eval("[data-run-state]", (els) => els.forEach((e) => e.setAttribute("data-flow-seen", "")));
    await page.getByRole("button", { name: "Approve and apply" }).click();
    state = ended(["succeeded", "failed", "cancelled"]);
    await state.waitFor({ timeout: RUN_WAIT });
  }
  const runState = await stateOf(state);
  check(runState === "succeeded", `the run ended ${runState}:\n${await page.locator("body").innerText()}`);
  await page.getByText("External IDs written").first().waitFor();
  const written = (await page.locator("body").innerText()).match(/([\d,]+) External IDs? written/);
  check(written && number(written[1]) === planned, `the run wrote ${written && written[1]} External IDs, the preview said ${planned}`);
  step(`run succeeded on ${page.url()}`);
  await shoot(page, "07-pull-run-result");

  // --- Dashboard, after ----------------------------------------------------------------
  step("dashboard after the pull");
  await page.locator("header a[href='/']").first().click();
  await page.waitForURL((url) => url.pathname === "/");
  await page.waitForSelector("svg.chart");
  const after = await dashboardCounts(page);
  step(`situations after: ${JSON.stringify(after)}`);
  // new_link counts the users this run linked; linked, those linked before.
  const linkedBefore = (before.linked ?? 0) + (before.new_link ?? 0);
  const linkedAfter = (after.linked ?? 0) + (after.new_link ?? 0);
  check(linkedAfter - linkedBefore >= planned, `linked + new_link grew by ${linkedAfter - linkedBefore}, the run wrote ${planned}`);
  check((after.missing_field ?? 0) < before.missing_field, `missing_field did not shrink: before ${before.missing_field}, after ${after.missing_field}`);
  check((after.duplicate_accounts ?? 0) > 0, "after the pull with account_id the demo has users in duplicate_accounts");
  await shoot(page, "08-dashboard-after");

  // --- Users in duplicate_accounts, and one user's explanation ---------------------------
  step("users in duplicate_accounts");
  await Promise.all([
    page.waitForURL((url) => url.pathname === "/users"),
    page.locator("a.tile[href$='situation=duplicate_accounts']").click(),
  ]);
  check(new URL(page.url()).searchParams.get("situation") === "duplicate_accounts", `the tile led to ${page.url()}`);
  const firstDuplicate = page.locator("table#users tbody tr td:first-child a[href^='/users/']").first();
  await firstDuplicate.waitFor();
  await shoot(page, "09-users-duplicate-accounts");
  await Promise.all([
    page.waitForURL((url) => /^\/users\/[^/]+$/.test(url.pathname)),
    firstDuplicate.click(),
  ]);
  await page.locator(".situation").first().waitFor();
  check((await textOf(page, ".situation")).includes("duplicate_accounts"), `the user's .situation says ${await textOf(page, ".situation")}`);
  const explanation = await textOf(page, ".explanation");
  step(`explanation: ${explanation}`);
  check(/accounts share|@/.test(explanation), `the explanation mentions neither "accounts share" nor the e-mail: ${explanation}`);
  // It names the two accounts of the demo directory (ids 557058:…, possibly shortened).
  const ids = new Set(explanation.match(/557058:[0-9a-f]+/g) ?? []);
  check(ids.size >= 2, `the explanation names ${ids.size} account ids, want 2: ${explanation}`);
  const evidence = await textOf(page, "#evidence");
  for (const id of ids) check(evidence.includes(id), `the evidence table does not show account ${id}:\n${evidence}`);
  check((await textOf(page, ".fix")).length > 0, "the user's page has an empty .fix");
  check((await page.locator("table#audit").count()) === 1, "the user's page has no table#audit");
  await shoot(page, "10-user-duplicate-accounts");

  // --- Set an External ID by hand on a user in no_match ---------------------------------
  step("manual External ID on a user in no_match");
  const noMatchUser = await firstUserIn(page, "no_match");
  await open(page, noMatchUser);
  await page.locator(".situation").first().waitFor();
  check((await textOf(page, ".situation")).includes("no_match"), `${noMatchUser} .situation says ${await textOf(page, ".situation")}`);
  check((await page.locator("form#exclude").count()) === 1, "the user's page has no form#exclude");
  await shoot(page, "11-user-no-match");
  const setForm = page.locator("form#set-external-id");
  await setForm.locator("input[name=external_id]").fill(MANUAL_EXTERNAL_ID);
  await setForm.locator("input[name=reason]").fill(MANUAL_REASON);
  await setForm.getByRole("button", { name: "Set External ID" }).click();
  await page.getByText("External ID set.").waitFor();
  const body = await page.locator("body").innerText();
  check(body.includes(MANUAL_EXTERNAL_ID), `after the set, the page does not show ${MANUAL_EXTERNAL_ID}`);
  const audit = await rows(page, "table#audit");
  check(
    audit.some((cells) => cells.some((c) => c === "manual" || /\bmanual\b/.test(c)) && cells.join(" ").includes(MANUAL_EXTERNAL_ID)),
    `the user's audit has no manual row with ${MANUAL_EXTERNAL_ID}:\n${audit.map((r) => r.join(" | ")).join("\n")}`,
  );
  // Now there is an External ID to clear.
  check((await page.locator("form#clear-external-id").count()) === 1, "after the set, the user's page has no form#clear-external-id");
  await shoot(page, "12-user-manual-set");

  // --- Audit log, API tokens -------------------------------------------------------------
  step("audit log");
  await Promise.all([
    page.waitForURL((url) => url.pathname === "/audit"),
    page.locator("header nav a[href='/audit']").click(),
  ]);
  await page.locator("table#audit tbody tr").first().waitFor();
  check((await page.locator("form").filter({ has: page.locator("input, select") }).count()) > 0, "the audit log has no filter form");
  check((await page.locator("table#audit").innerText()).includes(MANUAL_EXTERNAL_ID), "the audit log does not show the manual set");
  await shoot(page, "13-audit-log");

  step("api tokens");
  await Promise.all([
    page.waitForURL((url) => url.pathname === "/tokens"),
    page.locator("header nav a[href='/tokens']").click(),
  ]);
  await page.locator("main").waitFor();
  await shoot(page, "14-api-tokens");

  await context.close();
}

await run(flow);
