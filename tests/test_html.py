"""The HTML report and Jupyter display: what they say about a run, and that they fetch nothing."""

import re
from html.parser import HTMLParser

import pytest
from conftest import BASE, SCENARIOS, scenario
from test_plots import LOST, R2

import simroll
from simroll.cli import main
from simroll.errors import UsageError
from simroll.view.html import report_html, summary_html, write_html


class _Tags(HTMLParser):
    """Collects start tags with their attributes, and checks that every opened element is closed."""

    VOID = {
        "meta",
        "img",
        "br",
        "hr",
        "link",
        "input",
        "path",
        "use",
        "rect",
        "stop",
        "circle",
        "line",
        "polygon",
        "polyline",
        "ellipse",
    }

    def __init__(self):
        super().__init__()
        self.tags, self.stack = [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_endtag(self, tag):
        if tag in self.VOID:
            return
        assert self.stack and self.stack[-1] == tag, f"</{tag}> closes <{self.stack[-1] if self.stack else None}>"
        self.stack.pop()


def _parse(page):
    p = _Tags()
    p.feed(page)
    p.close()
    assert p.stack == []
    return p.tags


def _no_fetch(tags, page):
    """Nothing the browser would load from a URL: no src/href but data: and in-page anchors, no CSS url()."""
    for tag, attrs in tags:
        for key in ("src", "href", "xlink:href", "data", "action"):
            value = attrs.get(key)
            if value is not None:
                assert value.startswith(("data:", "#")), f"<{tag} {key}={value[:60]!r}>"
    assert tag != "script"
    assert not re.search(r"url\(\s*['\"]?(https?:|//)", page) and "@import" not in page


@pytest.fixture(scope="module")
def lost():
    return simroll.run_scenario(scenario(LOST))


def test_summary_names_invariants_violation_and_chain(lost):
    frag = summary_html(lost)
    assert lost._repr_html_() == frag
    assert "VIOLATED (2x)" in frag  # the read at t=2 and the final value of resource_new.data
    assert f"<code>{lost.trace_sha256}</code>" in frag
    assert "engine-2 read props of row 0 from resource_new.data and got nothing" in frag
    # the why, then the chain: engine-2 starts on "new" and takes m1; the write it missed; the read (highlighted)
    assert (
        '<p class="why"><b>why:</b> engine-2 (new) reads resource_new.data at t=2.000 and gets nothing: the write '
        "of &#x27;v0&#x27; by engine-1 at t=2.000 went to resource.properties only and nothing copied it to "
        "resource_new.data; it is lost</p>"
    ) in frag
    rows = re.findall(
        r'<tr( class="hit")?><td class="mono">([\d.]+)</td><td class="mono">#(\d+)</td>'
        r'<td class="role">([^<]*)</td><td class="ev">([^<]*)<',
        frag,
    )
    assert rows[:4] == [
        ("", "0.000", "3", "reader&#x27;s release", "engine-2 starts on new"),
        ("", "2.000", "9", "lost write", "engine-1 writes props[0] = &#x27;v0&#x27; to resource.properties"),
        ("", "2.000", "11", "cause", "engine-2 takes m1 (waited 0.000 s)"),
        (' class="hit"', "2.000", "12", "violation", "engine-2 reads props[0] from resource_new.data = None"),
    ]
    # the second violation (the final value): the lost write, who put the value seen there, the final read
    assert [(i, role) for _, _, i, role, _ in rows[4:]] == [
        ("14", "put the value seen"),
        ("18", "lost write"),
        ("21", "violation"),
    ]
    assert "<th>events</th><td>23</td>" in frag  # records 0..22
    _parse(frag)


def test_report_page_is_self_contained_and_embeds_the_plots(lost):
    page = report_html(lost)
    tags = _parse(page)
    _no_fetch(tags, page)
    imgs = [a["src"] for t, a in tags if t == "img"]
    assert len(imgs) == 6 and all(s.startswith("data:image/png;base64,iVBORw0KGgo") for s in imgs)  # + availability
    # most relevant to the lost write first: where the field lived, the chain, then the rest
    assert [a["id"] for t, a in tags if t == "figure"] == [
        "field_values",
        "sequence_diagram",
        "release_timeline",
        "queue_depth",
        "engine_load",
        "availability",
    ]
    assert "The plan has no steps." in page
    assert "<title>simroll: lost (violated)</title>" in page and "default-src &#x27;none&#x27;" not in page
    assert "default-src 'none'" in page  # the page forbids itself any fetch
    assert "name: lost" in page  # the scenario, as YAML


def test_svg_report_inlines_svg(lost):
    page = report_html(lost, fmt="svg")
    tags = _parse(page)
    _no_fetch(tags, page)
    assert sum(1 for t, _ in tags if t == "svg") == 6  # the five explaining plots and availability
    assert "<?xml" not in page and "<!DOCTYPE svg" not in page
    assert not [t for t, _ in tags if t == "img"]


def test_clean_run_with_steps():
    res = simroll.run_scenario(scenario(BASE, releases=R2, plan="[{after: 1.5, restart: engine-1, release: r2}]"))
    assert res.ok
    page = report_html(res)
    assert "every invariant held" in page and "VIOLATED" not in page
    assert re.search(r'<td class="mono">1\.500</td><td>0</td><td class="ev">restart engine-1 -&gt; r2</td>', page)
    assert page.count("<img ") == 5  # no field-values plot: nothing was lost; availability always


def test_write_html_refuses_to_overwrite(lost, tmp_path):
    path = tmp_path / "r.html"
    write_html(lost, path, plots=False)
    first = path.read_text()
    with pytest.raises(UsageError, match="file exists; pass --force"):
        write_html(lost, path)
    assert path.read_text() == first
    write_html(lost, path, overwrite=True, plots=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.html"]  # no temporary file left behind
    with pytest.raises(UsageError, match="directory .* does not exist"):
        write_html(lost, tmp_path / "missing" / "r.html")


def test_cli_run_html(capsys, tmp_path):
    page = tmp_path / "report.html"
    src = str(SCENARIOS / "lost_dual_writes.yaml")
    assert main(["run", src, "--html", str(page), "--json"]) == 1
    out = capsys.readouterr()
    assert out.out.lstrip().startswith("{")  # stdout stays one JSON object
    assert f"wrote {page}" in out.err
    text = page.read_text()
    assert "no-lost-write" in text and text.count("<img ") == 6
    assert main(["run", src, "--html", str(page)]) == 2
    assert "--html: file exists; pass --force" in capsys.readouterr().err
    assert main(["run", src, "--html", str(page), "--force"]) == 1
