// What the browser flows (admin_flow.mjs, signin_flow.mjs) share: the environment they are
// run with by crates/tether/tests/browser.rs, checks and log lines, the watch for CSP
// violations and script errors, screenshots, and the run itself (chromium's launch, the
// report of a failure with the pages' text and failure.png, the exit status).
//
// A flow calls `flowKit(name)` once; `name` starts every line it prints. The kit reads
//   TETHER_URL             the server, e.g. http://127.0.0.1:40123
//   TETHER_ADMIN_PASSWORD  the demo admin's password (the user is `admin`)
//   TETHER_CHROMIUM        the chromium binary (Debian's /usr/bin/chromium)
//   TETHER_SCREENSHOTS     where the PNG files go
// and playwright-core comes from NODE_PATH (scripts/peers/install).

import { createRequire } from "node:module";
import { mkdirSync } from "node:fs";
import { join } from "node:path";

// ES modules ignore NODE_PATH; a CommonJS require honours it.
const require = createRequire(import.meta.url);
const { chromium } = require("playwright-core");

/** How long a selector or a navigation may take (the machine may have two busy cores). */
export const WAIT = 60_000;

/** A check that did not hold: reported by its message alone, without a stack. */
export class Failure extends Error {}

export function check(condition, message) {
  if (!condition) throw new Failure(message);
}

// Rows of a table as arrays of cell texts.
export async function rows(page, selector) {
  return page.$$eval(`${selector} tbody tr`, (trs) =>
    trs.map((tr) => [...tr.querySelectorAll("td,th")].map((c) => c.innerText.trim())),
  );
}

/**
 * The pieces of a flow whose log lines start with `${name}: `. Reads the environment (exits
 * with status 2 naming a variable that is not set) and creates the screenshot directory.
 */
export function flowKit(name) {
  function env(variable) {
    const value = process.env[variable];
    if (!value) {
      console.error(`${name}: ${variable} is not set`);
      process.exit(2);
    }
    return value;
  }

  function step(text) {
    console.log(`${name}: ${text}`);
  }

  const BASE = env("TETHER_URL").replace(/\/$/, "");
  const PASSWORD = env("TETHER_ADMIN_PASSWORD");
  const CHROMIUM = env("TETHER_CHROMIUM");
  const SHOTS = env("TETHER_SCREENSHOTS");
  mkdirSync(SHOTS, { recursive: true });

  // Everything the browser reports as an error: CSP violations and failed loads arrive as
  // console errors, uncaught exceptions as page errors. Those on pages (or from URLs) that
  // `ours` refuses (the OpenID provider's) are only printed.
  const problems = [];
  function watch(page, ours = () => true) {
    page.on("console", (msg) => {
      if (msg.type() !== "error") return;
      const where = msg.location()?.url || page.url();
      // Chromium asks for /favicon.ico on its own; a 404 there is no page's doing.
      if (new URL(where, BASE).pathname === "/favicon.ico") return;
      const text = `console error on ${page.url()}: ${msg.text()} (${where})`;
      if (ours(page.url()) || ours(where)) problems.push(text);
      else step(`(provider page) ${text}`);
    });
    page.on("pageerror", (err) => {
      const text = `page error on ${page.url()}: ${err.message}`;
      if (ours(page.url())) problems.push(text);
      else step(`(provider page) ${text}`);
    });
    // Buttons with data-confirm ask window.confirm(); Playwright would dismiss it.
    page.on("dialog", (dialog) => dialog.accept());
  }

  // A browser context with the flows' viewport and waits.
  async function newContext(browser) {
    const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    context.setDefaultTimeout(WAIT);
    context.setDefaultNavigationTimeout(WAIT);
    return context;
  }

  // Screenshots have fixed names (browser.rs lists the ones every run must take; the README
  // shows them).
  const shots = [];
  async function shoot(page, screen) {
    const file = `${screen}.png`;
    await page.screenshot({ path: join(SHOTS, file), fullPage: true });
    shots.push(file);
    step(`screenshot ${file} (${page.url()})`);
  }

  // Navigates and checks that the server answered with a page, not an error.
  async function open(page, path) {
    const response = await page.goto(BASE + path, { waitUntil: "load" });
    check(response, `no response for ${path}`);
    check(response.ok(), `GET ${path} answered ${response.status()}`);
    return response;
  }

  // On /login: signs in as the demo admin and checks that it led to the dashboard.
  async function signInAsAdmin(page) {
    await page.fill("input[name=username]", "admin");
    await page.fill("input[name=password]", PASSWORD);
    await Promise.all([
      page.waitForURL((url) => url.pathname !== "/login" || url.searchParams.has("error")),
      page.getByRole("button", { name: "Sign in" }).click(),
    ]);
    check(new URL(page.url()).pathname === "/", `signing in as admin led to ${page.url()}`);
  }

  // Runs `flow(browser)` in a headless chromium, then exits: 1 when it failed (after printing
  // what failed, every open page's URL and text, and saving failure.png, failure-1.png, … of
  // them) or when the browser reported problems (`scope` says where they were counted);
  // otherwise prints the screenshots taken and returns.
  async function run(flow, { scope = "" } = {}) {
    let failed = false;
    const browser = await chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
      timeout: 120_000,
      args: [
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
      ],
    });
    try {
      await flow(browser);
    } catch (err) {
      failed = true;
      console.error(`${name}: FAILED: ${err instanceof Failure ? err.message : err.stack || err}`);
      let n = 0;
      for (const context of browser.contexts()) {
        for (const page of context.pages()) {
          const file = n === 0 ? "failure.png" : `failure-${n}.png`;
          n += 1;
          try {
            console.error(`${name}: page ${page.url()}:\n${(await page.locator("body").innerText({ timeout: 5_000 })).slice(0, 4000)}`);
            await page.screenshot({ path: join(SHOTS, file), fullPage: true, timeout: 10_000 });
            console.error(`${name}: saved ${join(SHOTS, file)}`);
          } catch (e) {
            console.error(`${name}: could not capture the page: ${e.message}`);
          }
        }
      }
    } finally {
      await browser.close();
    }

    if (problems.length > 0) {
      failed = true;
      console.error(`${name}: the browser reported ${problems.length} error(s)${scope} (CSP violations, JS errors, failed loads):`);
      for (const p of problems) console.error(`  ${p}`);
    }
    if (failed) process.exit(1);
    console.log(`${name}: passed; screenshots: ${shots.join(" ")}`);
  }

  return { env, step, BASE, PASSWORD, SHOTS, watch, newContext, shoot, open, signInAsAdmin, run };
}
