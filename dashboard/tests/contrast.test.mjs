// WCAG AA contrast (4.5:1 for normal text) of the dev tag both pages show in local dev, and of the other text
// drawn in the warning colour, computed from styles.css itself (axe's `color-contrast` rule, without a browser).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';

const css = readFileSync(new URL('../public/styles.css', import.meta.url), 'utf8');

/** The value of a custom property in :root. */
function variable(name) {
  const match = css.match(new RegExp(`${name}:\\s*(#[0-9a-fA-F]{6})`));
  assert.ok(match, `${name} is a #rrggbb colour in styles.css`);
  return match[1];
}

/** The `color` of a rule, through one var(), as #rrggbb. */
function colorOf(selector) {
  const escaped = selector.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  const rule = css.match(new RegExp(`(^|\\n)${escaped}\\s*\\{([^}]*)\\}`));
  assert.ok(rule, `a rule for ${selector}`);
  const value = rule[2].match(/(?:^|;|\s)color:\s*([^;]+)/)[1].trim();
  const viaVar = value.match(/^var\((--[a-z-]+)\)$/);
  return viaVar ? variable(viaVar[1]) : value;
}

function luminance(hex) {
  const [r, g, b] = [1, 3, 5].map((i) => {
    const c = parseInt(hex.slice(i, i + 2), 16) / 255;
    return c <= 0.04045 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4;
  });
  return 0.2126 * r + 0.7152 * g + 0.0722 * b;
}

function contrast(a, b) {
  const [hi, lo] = [luminance(a), luminance(b)].sort((x, y) => y - x);
  return (hi + 0.05) / (lo + 0.05);
}

test('the formula gives the known ratios', () => {
  assert.equal(contrast('#000000', '#ffffff').toFixed(1), '21.0');
  assert.equal(contrast('#a86b00', '#ffffff').toFixed(1), '4.4'); // the colour axe reported
});

test('the dev tag of the client panel and the agency console passes WCAG AA on the page', () => {
  // Both pages draw it in the .dev-nav line of the white .panel.
  for (const page of ['index.html', 'agency.html']) {
    const html = readFileSync(new URL(`../public/${page}`, import.meta.url), 'utf8');
    assert.match(html, /class="dev-nav"[\s\S]*class="dev-tag"/, `${page} shows the dev tag in the dev nav`);
  }
  const ratio = contrast(colorOf('.dev-tag'), '#ffffff');
  assert.ok(ratio >= 4.5, `.dev-tag on white: ${ratio.toFixed(2)}:1`);
});

test('text in the warning colour passes WCAG AA on every background it sits on', () => {
  const text = colorOf('.was');
  for (const background of ['#ffffff', variable('--warn-bg'), '#f5f6f8']) {
    const ratio = contrast(text, background);
    assert.ok(ratio >= 4.5, `${text} on ${background}: ${ratio.toFixed(2)}:1`);
  }
});
