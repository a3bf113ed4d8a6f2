// A new user's path through OpenID Connect sign-in configured from the admin UI, in a real
// browser (issue 5's "Done when"): the admin switches Auto-populate on and sets up the
// provider under Settings › Security; a user with no External ID signs in through the
// provider with their e-mail in another case, gets linked and sees it on "My account"; the
// admin sees the External ID on the user's page and the audit entry with origin `login`; a
// second sign-in after the e-mail changed at the provider matches by External ID and writes
// nothing. A full-page screenshot of the main screens goes to $TETHER_SCREENSHOTS.
//
// Run by crates/tether/tests/browser.rs against `tether serve --demo` (started without any
// TETHER_OIDC_* variable) and oidc-provider-mock; reads
//   TETHER_URL             the server, e.g. http://127.0.0.1:40123
//   TETHER_ADMIN_PASSWORD  the demo admin's password (the user is `admin`)
//   TETHER_OIDC_PROVIDER   the provider's base URL, which is its issuer
//   TETHER_CHROMIUM        the chromium binary (Debian's /usr/bin/chromium)
//   TETHER_SCREENSHOTS     where the PNG files go
// and needs NODE_PATH pointing at node_modules with playwright-core (scripts/peers/install).
// Exits 0 when every check passed; otherwise prints what failed, the pages' URLs and text,
// and saves failure.png. The parts it shares with admin_flow.mjs are in common.mjs.
//
// No fixed sleeps: every wait is for a selector, a URL or a text, with generous timeouts.

import { randomBytes } from "node:crypto";
import { check, Failure, flowKit, rows } from "./common.mjs";

const kit = flowKit("signin_flow");
const { step, BASE, watch, shoot, open, signInAsAdmin, run } = kit;
const PROVIDER = kit.env("TETHER_OIDC_PROVIDER").replace(/\/$/, "");

const TETHER_ORIGIN = new URL(BASE).origin;
const PROVIDER_ORIGIN = new URL(PROVIDER).origin;
const RUN = randomBytes(4).toString("hex");
// The account id the provider gives the user (its `sub`), new to this run.
const SUB = `acct-e2e-${RUN}`;
const CLIENT_ID = "tether-e2e";
// Must never come back in a page once saved.
const CLIENT_SECRET = `e2e-secret-${randomBytes(12).toString("hex")}`;
const CHANGED_EMAIL = `changed-${RUN}@elsewhere.example`;

// What the browser reports as an error counts on tether's pages only: the provider's pages
// are not tether's doing, what they report is only printed.
function onTether(url) {
  try {
    return new URL(url, BASE).origin === TETHER_ORIGIN;
  } catch {
    return false;
  }
}
function watchTether(page) {
  watch(page, onTether);
}

// A browser context that reaches only tether and the provider: the provider's page asks a
// CDN for its stylesheet, which a test must not depend on; it gets an empty one.
async function newContext(browser) {
  const context = await kit.newContext(browser);
  await context.route(
    (url) => url.origin !== TETHER_ORIGIN && url.origin !== PROVIDER_ORIGIN,
    (route) => {
      const request = route.request();
      if (request.resourceType() === "stylesheet") {
        return route.fulfill({ status: 200, contentType: "text/css", body: "" });
      }
      step(`blocked an outside request: ${request.method()} ${request.url()}`);
      return route.abort();
    },
  );
  return context;
}

async function bodyText(page) {
  return page.locator("body").innerText();
}

function show(table) {
  return table.map((r) => r.join(" | ")).join("\n");
}

// Sets the claims the provider puts in `sub`'s ID token (oidc-provider-mock's PUT /users/{sub}).
async function providerUser(sub, claims) {
  const response = await fetch(`${PROVIDER}/users/${encodeURIComponent(sub)}`, {
    method: "PUT",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(claims),
  });
  check(response.status === 204, `PUT ${PROVIDER}/users/${sub} answered ${response.status}: ${await response.text()}`);
}

// The REST API with the admin's session (reads need no CSRF header).
async function api(page, path) {
  const response = await page.request.get(BASE + path);
  check(response.ok(), `GET ${path} answered ${response.status()}: ${await response.text()}`);
  return response.json();
}

// A demo user the sign-in can link by e-mail: active, not excluded, no External ID, a plain
// ASCII address (upper-casing must not change its letters) that no other user shares.
async function pickUser(page) {
  const candidates = (await api(page, "/api/v1/users?situation=no_match&limit=500")).items.filter(
    (u) =>
      u.active &&
      !u.excluded &&
      u.external_id === null &&
      typeof u.email === "string" &&
      /^[a-z0-9._+-]+@[a-z0-9.-]+$/.test(u.email),
  );
  check(candidates.length > 0, "the demo has no active user in no_match without External ID and with a plain e-mail");
  for (const user of candidates) {
    const found = await api(page, `/api/v1/users?q=${encodeURIComponent(user.email)}&limit=50`);
    const sharing = found.items.filter((u) => (u.email ?? "").toLowerCase() === user.email.toLowerCase());
    if (sharing.length === 1 && sharing[0].id === user.id) return user;
  }
  throw new Failure(`none of ${candidates.length} no_match users has an e-mail of their own`);
}

// /login → "single sign-on" → the provider's authorization form, answered as SUB.
async function signInAtProvider(page, screenshot) {
  await page.getByRole("link", { name: "single sign-on" }).waitFor();
  const link = page.getByRole("link", { name: "single sign-on" });
  check((await link.getAttribute("href")) === "/auth/login", `the "single sign-on" link goes to ${await link.getAttribute("href")}`);
  await Promise.all([
    page.waitForURL((url) => url.origin === PROVIDER_ORIGIN || url.pathname !== "/login"),
    link.click(),
  ]);
  check(new URL(page.url()).origin === PROVIDER_ORIGIN, `"single sign-on" led to ${page.url()}, not the provider:\n${await bodyText(page)}`);
  await provider(page, screenshot);
}

// On the provider's authorization page: types SUB and authorizes; waits to be back on tether.
async function provider(page, screenshot) {
  const authorize = new URL(page.url());
  check(authorize.searchParams.get("client_id") === CLIENT_ID, `the provider was asked for client ${authorize.searchParams.get("client_id")}, not ${CLIENT_ID}`);
  const redirect = authorize.searchParams.get("redirect_uri");
  check(redirect === `${BASE}/auth/callback`, `with the redirect URL left blank tether should use its own ${BASE}/auth/callback, sent ${redirect}`);
  check(authorize.searchParams.get("code_challenge_method") === "S256", `the authorization request has no PKCE S256: ${page.url()}`);
  check(authorize.searchParams.get("nonce"), `the authorization request has no nonce: ${page.url()}`);
  const sub = page.locator("form input[name=sub][type=text]");
  await sub.waitFor();
  await sub.fill(SUB);
  if (screenshot) await shoot(page, screenshot);
  await Promise.all([
    // The callback redirects (303) on success; a refusal is a page at /auth/callback.
    page.waitForURL((url) => url.origin === TETHER_ORIGIN, { waitUntil: "load" }),
    page.getByRole("button", { name: "Authorize", exact: true }).click(),
  ]);
}

async function flow(browser) {
  // === The admin configures sign-in ========================================================
  const admin = await newContext(browser);
  const page = await admin.newPage();
  watchTether(page);

  step("admin signs in");
  await open(page, "/login");
  await signInAsAdmin(page);

  step("settings: auto-populate on");
  await open(page, "/settings/security");
  const security = page.locator("form#security-settings");
  await security.locator("select#auto_populate").selectOption("yes");
  await Promise.all([
    page.waitForURL((url) => url.pathname === "/settings/security" && url.searchParams.get("done") === "saved"),
    security.getByRole("button", { name: "Save", exact: true }).click(),
  ]);
  await page.getByText("Settings saved.").waitFor();
  check(
    (await page.locator("form#security-settings select#auto_populate").inputValue()) === "yes",
    "after saving, Auto-populate account ID does not show Yes",
  );

  step("settings: single sign-on");
  let oidc = page.locator("form#oidc-settings");
  await oidc.waitFor();
  check((await oidc.getAttribute("method"))?.toLowerCase() === "post", "form#oidc-settings is not method=post");
  check(new URL(await oidc.getAttribute("action"), BASE).pathname === "/settings/security/oidc", `form#oidc-settings posts to ${await oidc.getAttribute("action")}`);
  const fields = ["issuer", "client_id", "client_secret", "redirect_url", "scopes", "account_id_claim", "admin_claim", "admin_subjects", "admin_emails"];
  for (const id of fields) {
    const input = oidc.locator(`#${id}`);
    check((await input.count()) === 1, `form#oidc-settings has no #${id}`);
    check((await input.getAttribute("name")) === id, `#${id} in form#oidc-settings is named ${await input.getAttribute("name")}`);
  }
  check((await oidc.locator("#client_secret").getAttribute("type")) === "password", "#client_secret is not type=password");
  const statusBefore = (await page.locator("#oidc-status").innerText()).trim();
  step(`status before: ${statusBefore}`);
  check(!statusBefore.includes("Sign-in is on"), `#oidc-status says "${statusBefore}" before any issuer was configured`);
  await oidc.locator("#issuer").fill(PROVIDER);
  await oidc.locator("#client_id").fill(CLIENT_ID);
  await oidc.locator("#client_secret").fill(CLIENT_SECRET);
  await oidc.locator("#redirect_url").fill("");
  await Promise.all([
    page.waitForURL((url) => url.pathname === "/settings/security" && url.searchParams.get("done") === "oidc"),
    oidc.getByRole("button", { name: "Save sign-in settings" }).click(),
  ]);
  const saved = page.locator(".notice", { hasText: "Sign-in settings saved" }).first();
  await saved.waitFor();
  step(`notice: ${(await saved.innerText()).trim()}`);
  // After the notice, the status line says what the provider answered at discovery.
  const status = page.locator("#oidc-status");
  await status.filter({ hasText: "Sign-in is on" }).waitFor();
  const statusText = (await status.innerText()).trim();
  step(`status: ${statusText}`);
  check(statusText.includes(PROVIDER) && /discovery/i.test(statusText), `#oidc-status does not say what the provider at ${PROVIDER} answered at discovery: "${statusText}"`);
  check(
    await saved.evaluate((notice) => {
      const line = document.getElementById("oidc-status");
      return Boolean(notice.compareDocumentPosition(line) & Node.DOCUMENT_POSITION_FOLLOWING);
    }),
    "#oidc-status is not after the notice",
  );
  const callbackHint = (await page.locator("section#oidc").innerText()).includes(`${BASE}/auth/callback`);
  check(callbackHint, `the sign-in section does not show this server's redirect URL ${BASE}/auth/callback to register at the provider`);
  oidc = page.locator("form#oidc-settings");
  check((await oidc.locator("#issuer").inputValue()).replace(/\/$/, "") === PROVIDER, `after saving, the issuer shows ${await oidc.locator("#issuer").inputValue()}`);
  check((await oidc.locator("#client_id").inputValue()) === CLIENT_ID, `after saving, the client id shows ${await oidc.locator("#client_id").inputValue()}`);
  check((await oidc.locator("#client_secret").inputValue()) === "", "after saving, the client secret field is not empty");
  check(!(await page.content()).includes(CLIENT_SECRET), "the page after saving contains the client secret");
  await shoot(page, "15-settings-sign-in");

  // === A user the sign-in can link =========================================================
  step("pick a user");
  const user = await pickUser(page);
  const claimedEmail = user.email.toUpperCase();
  check(claimedEmail !== user.email, `upper-casing ${user.email} changes nothing`);
  step(`user ${user.id} <${user.email}> signs in as ${SUB} with e-mail ${claimedEmail}`);
  await providerUser(SUB, { email: claimedEmail, email_verified: true, name: user.display_name });

  // === The user signs in, in a browser of their own =========================================
  const person = await newContext(browser);
  const me = await person.newPage();
  watchTether(me);
  step("user: first sign-in");
  await open(me, "/login");
  await signInAtProvider(me, "16-provider-sign-in");
  check(new URL(me.url()).pathname === "/me", `the first sign-in landed on ${me.url()}, not /me:\n${await bodyText(me)}`);
  await me.getByRole("heading", { level: 1, name: "My account" }).waitFor();
  let mine = await bodyText(me);
  check(mine.includes(user.id), `My account does not show the profile ${user.id}:\n${mine}`);
  check(mine.includes(SUB), `My account does not show the External ID ${SUB}:\n${mine}`);
  check(/\blinked\b/i.test(mine) && !/not linked/i.test(mine), `My account does not say the profile is linked:\n${mine}`);
  check(/set by login/.test(mine), `My account does not say the External ID was set by login:\n${mine}`);
  let signIns = await rows(me, "table");
  check(signIns.length >= 1 && signIns[0].join(" ").includes("new_link"), `the latest sign-in is not new_link:\n${show(signIns)}`);
  await shoot(me, "17-my-account-linked");

  // === The admin sees the link ==============================================================
  step("admin: the user's page");
  await open(page, `/users/${encodeURIComponent(user.id)}`);
  const externalId = (await page.locator("#external-id").innerText()).trim();
  check(externalId === SUB, `${user.id}'s External ID shows ${externalId}, not ${SUB}`);
  const userAudit = await rows(page, "table#audit");
  check(
    userAudit.some((cells) => cells.includes("login") && cells.includes(SUB)),
    `${user.id}'s audit has no login row with ${SUB}:\n${show(userAudit)}`,
  );

  step("admin: audit log filtered by origin login");
  await open(page, "/audit");
  const filter = page.locator("form#audit-filter");
  await filter.locator("select#origin").selectOption("login");
  await Promise.all([
    page.waitForURL((url) => url.pathname === "/audit" && url.searchParams.get("origin") === "login"),
    filter.getByRole("button", { name: "Filter" }).click(),
  ]);
  await page.locator("table#audit tbody tr").first().waitFor();
  let audit = await rows(page, "table#audit");
  let theirs = audit.filter((cells) => cells[1] === user.id);
  check(theirs.length === 1, `the audit log with origin login has ${theirs.length} rows for ${user.id}, want 1:\n${show(audit)}`);
  check(theirs[0][2] === "login" && theirs[0][4] === "∅" && theirs[0][5] === SUB, `the audit row for ${user.id} is not login ∅ → ${SUB}: ${theirs[0].join(" | ")}`);
  await shoot(page, "18-audit-login");

  // === Second sign-in: the e-mail changed at the provider; matched by External ID ============
  step("user: sign out");
  await providerUser(SUB, { email: CHANGED_EMAIL, email_verified: true, name: user.display_name });
  await me.getByRole("button", { name: "Sign out" }).click();
  await me.getByText("You are signed out").waitFor();
  const gone = await me.request.get(`${BASE}/me`, { maxRedirects: 0 });
  check(gone.status() >= 300 && gone.status() < 400, `after signing out /me answered ${gone.status()}, not a redirect to sign in`);

  step("user: second sign-in with a changed e-mail");
  await open(me, "/login");
  await signInAtProvider(me, null);
  check(new URL(me.url()).pathname === "/me", `the second sign-in landed on ${me.url()}, not /me:\n${await bodyText(me)}`);
  await me.getByRole("heading", { level: 1, name: "My account" }).waitFor();
  mine = await bodyText(me);
  check(mine.includes(user.id) && mine.includes(SUB), `the second sign-in is not ${user.id} with ${SUB}:\n${mine}`);
  check(!mine.includes(CHANGED_EMAIL), `My account shows the provider's new e-mail ${CHANGED_EMAIL}; the profile's own should stay:\n${mine}`);
  signIns = await rows(me, "table");
  check(signIns.length >= 2, `My account lists ${signIns.length} sign-ins, want 2:\n${show(signIns)}`);
  check(
    /\blinked\b/.test(signIns[0][1]) && !signIns[0][1].includes("new_link") && !signIns[0][1].includes("linked now"),
    `the second sign-in is not a plain linked match:\n${show(signIns)}`,
  );

  step("admin: nothing more written");
  await page.reload({ waitUntil: "load" });
  audit = await rows(page, "table#audit");
  theirs = audit.filter((cells) => cells[1] === user.id);
  check(theirs.length === 1, `after the second sign-in the audit log has ${theirs.length} login rows for ${user.id}, want 1:\n${show(audit)}`);
  const after = await api(page, `/api/v1/users/${encodeURIComponent(user.id)}`);
  check(
    after.external_id === SUB && after.external_id_origin === "login",
    `after the second sign-in ${user.id}'s External ID is ${after.external_id} (set by ${after.external_id_origin})`,
  );
  const logins = after.audit.filter((e) => e.origin === "login");
  check(logins.length === 1, `${user.id} has ${logins.length} audit entries with origin login, want 1: ${JSON.stringify(after.audit)}`);

  await person.close();
  await admin.close();
}

await run(flow, { scope: " on tether's pages" });
