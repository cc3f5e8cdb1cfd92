"""A :class:`~lab.ladder.model.Ladder` as ONE self-contained HTML page: inline CSS, inline SVG,
a little inline JS (filter by host or conversation, zoom on a time window), and a
Content-Security-Policy that forbids every fetch, so the page opens from a CI artifact.

The SVG is plain: one ``<g class="row">`` per row at its own ``translate(0, y)``; the script
only hides rows and moves the visible ones up. ``window.ladder`` is the page's self-check
(lanes, visible arrows, highlighted frames) for tests in a browser.
"""

from __future__ import annotations

import html
from collections.abc import Sequence

from .model import EXPECTED, FRAME, NOTE, RUN, Ladder, Row

LANE_W = 230
LEFT = 80  # the time column
TOP = 44  # lane names
ROW_H = 28
CSP = "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:"

CSS = """
body{font-family:system-ui,sans-serif;margin:0;color:#222}
header{padding:10px 16px;background:#f4f4f8;border-bottom:1px solid #ddd}
h1{font-size:18px;margin:0 0 6px}
.meta{font-size:12px;color:#555}
#controls{font-size:13px;margin-top:6px}
#controls label{margin-right:12px}
#controls input{width:6em}
#controls select{max-width:22em}
main{display:flex;align-items:flex-start}
#findings{width:340px;flex:none;padding:8px 12px;font-size:13px;border-right:1px solid #ddd}
#findings li{margin:0 0 8px}
#findings .held{color:#106010}
#findings .failed{color:#a01010}
#findings a{font-family:monospace}
#diagram{overflow:auto;flex:1;padding:0 8px}
svg{font-family:ui-monospace,monospace;font-size:11px}
.lane line{stroke:#999;stroke-width:1}
.lane text{font-weight:bold;font-size:12px;font-family:system-ui,sans-serif}
.row .t{fill:#666}
.row text{paint-order:stroke;stroke:#fff;stroke-width:3px;stroke-linejoin:round}
.hl text{stroke:#fff6cc}
.arrow{stroke:#335;stroke-width:1.3}
.run .arrow{stroke:#579;stroke-width:5;stroke-opacity:.55}
.run .lbl{fill:#357}
.hl .bg{fill:#ffe066;fill-opacity:.55}
.hl .arrow{stroke:#c60;stroke-width:2.2}
.note .band{fill:#eef3ff}
.note.impair .band{fill:#ffeede}
.note.console .band{fill:#eef9ee}
.note.failure .band{fill:#ffe3e3}
.note.failure text{fill:#a00;font-weight:bold}
.note text{fill:#335;font-family:system-ui,sans-serif}
.expected .arrow{stroke:#d00;stroke-dasharray:5 4;stroke-width:2}
.expected text{fill:#d00;font-weight:bold}
.flash .bg,.flash .band{fill:#ff9f43 !important;fill-opacity:.8}
.hidden{display:none}
"""

JS = r"""
(function(){
  const svg=document.getElementById('ladder');
  const rows=[...svg.querySelectorAll('g.row')];
  const lanes=[...svg.querySelectorAll('g.lane line')];
  const host=document.getElementById('f-host'), conv=document.getElementById('f-conv');
  const t0=document.getElementById('f-t0'), t1=document.getElementById('f-t1');
  const TOP=%(top)d, H=%(row_h)d;
  function relayout(){
    const h=host.value, c=conv.value;
    const lo=t0.value===''?-Infinity:parseFloat(t0.value), hi=t1.value===''?Infinity:parseFloat(t1.value);
    let y=TOP;
    for(const r of rows){
      const t=parseFloat(r.dataset.t);
      let show=t>=lo&&t<=hi;
      if(show&&h&&r.dataset.src!==h&&r.dataset.dst!==h&&!r.classList.contains('note')) show=false;
      if(show&&c&&r.dataset.conv!==c&&!r.classList.contains('note')) show=false;
      r.classList.toggle('hidden',!show);
      if(show){r.setAttribute('transform','translate(0,'+y+')');y+=H;}
    }
    for(const l of lanes) l.setAttribute('y2',y);
    svg.setAttribute('height',y+10);
    window.ladder.arrows=svg.querySelectorAll('g.row.frame:not(.hidden),g.row.run:not(.hidden)').length;
  }
  function zoomTo(a,b){t0.value=a;t1.value=b;relayout();}
  window.ladder={lanes:lanes.length,arrows:0,relayout:relayout,zoomTo:zoomTo,
    highlighted:svg.querySelectorAll('g.row.hl').length,
    expected:svg.querySelectorAll('g.row.expected').length};
  for(const el of [host,conv,t0,t1]) el.addEventListener('input',relayout);
  document.getElementById('f-reset').addEventListener('click',()=>{host.value='';conv.value='';t0.value='';t1.value='';relayout();});
  for(const a of document.querySelectorAll('a.frame')){
    a.addEventListener('click',ev=>{
      const g=document.getElementById(a.getAttribute('href').slice(1));
      if(!g) return;
      ev.preventDefault();
      if(g.classList.contains('hidden')){host.value='';conv.value='';t0.value='';t1.value='';relayout();}
      g.scrollIntoView({block:'center'});
      g.classList.add('flash');setTimeout(()=>g.classList.remove('flash'),1500);
    });
  }
  svg.addEventListener('click',ev=>{
    const g=ev.target.closest('g.row');
    if(!g||!ev.shiftKey) return;
    const t=parseFloat(g.dataset.t);
    if(t0.value===''||t<parseFloat(t0.value)||t1.value!=='') zoomTo(t,''); else zoomTo(t0.value,t);
  });
  relayout();
  document.body.dataset.ready='1';
})();
"""


def _e(s: object) -> str:
    return html.escape(str(s), quote=True)


def _x(ladder: Ladder) -> dict[str, float]:
    return {ln.id: LEFT + LANE_W * (k + 0.5) for k, ln in enumerate(ladder.lanes)}


def _row_svg(r: Row, k: int, xs: dict[str, float], width: float) -> str:
    cls = ["row", r.kind]
    if r.findings and r.kind in (FRAME, RUN):
        cls.append("hl")
    if r.kind == NOTE:
        cls.append(r.note_kind)
    rid = f"f{r.frames[0]}" if r.kind == FRAME else f"run{r.frames[0]}" if r.kind == RUN else f"r{k}"
    if r.kind == EXPECTED:
        rid = f"x-{r.findings[0]}"
    attrs = (
        f'id="{_e(rid)}" class="{" ".join(cls)}" data-t="{r.t:.6f}" data-src="{_e(r.src or "")}" '
        f'data-dst="{_e(r.dst or "")}" data-conv="{_e(r.conv)}" data-frames="{" ".join(map(str, r.frames))}"'
        + (f' data-findings="{_e(" ".join(r.findings))}"' if r.findings else "")
    )
    parts = [f"<g {attrs}>"]
    frames = ", ".join(f"#{f}" for f in r.frames[:12]) + (" …" if len(r.frames) > 12 else "")
    tip = f"t={r.t:.6f}s {frames} {r.conv}\n{r.label}"
    if r.findings:
        tip += "\nmatched by: " + ", ".join(r.findings)
    parts.append(f"<title>{_e(tip.strip())}</title>")
    parts.append(f'<text class="t" x="4" y="{ROW_H - 9}">{r.t:9.3f}</text>')
    if r.kind in (FRAME, RUN):
        x1, x2 = xs.get(r.src or "", LEFT), xs.get(r.dst or "", LEFT)
        lo, hi = min(x1, x2), max(x1, x2)
        parts.append(f'<rect class="bg" x="{LEFT}" y="1" width="{width - LEFT}" height="{ROW_H - 2}" fill="none"/>')
        y = ROW_H - 6
        if x1 == x2:  # to itself (an address with no other end)
            parts.append(f'<path class="arrow" d="M{x1},{y - 8} h24 v8 h-20" fill="none" marker-end="url(#head)"/>')
        else:
            parts.append(f'<line class="arrow" x1="{x1}" y1="{y}" x2="{x2}" y2="{y}" marker-end="url(#head)"/>')
        label = r.label if len(r.label) <= 90 else r.label[:87] + "…"
        num = f"#{r.frames[0]}" + (f"–#{r.frames[-1]}" if r.kind == RUN else "")
        cx = lo + 8 if hi - lo > 40 else hi + 30
        parts.append(
            f'<text class="lbl" x="{cx}" y="{y - 4}">'
            f'<tspan class="num" fill="#888">{_e(num)} </tspan>{_e(label)}</text>'
        )
    elif r.kind == NOTE:
        parts.append(f'<rect class="band" x="{LEFT}" y="2" width="{width - LEFT}" height="{ROW_H - 4}" rx="3"/>')
        x = xs[r.src] + 6 if r.src in xs else LEFT + 6
        icon = {"impair": "⚡", "console": "▤", "step": "▶", "failure": "✗"}.get(r.note_kind, "•")
        text = r.label if len(r.label) <= 140 else r.label[:137] + "…"
        parts.append(f'<text x="{x}" y="{ROW_H - 10}">{icon} {_e(text)}</text>')
    else:  # EXPECTED
        x1 = xs.get(r.src or "", None)
        x2 = xs.get(r.dst or "", None)
        y = ROW_H - 6
        if x1 is not None and x2 is not None and x1 != x2:
            parts.append(f'<line class="arrow" x1="{x1}" y1="{y}" x2="{x2}" y2="{y}" marker-end="url(#xhead)"/>')
            cx = min(x1, x2) + 8
        else:
            parts.append(f'<line class="arrow" x1="{LEFT}" y1="{y}" x2="{width}" y2="{y}"/>')
            cx = LEFT + 8
        parts.append(f'<text x="{cx}" y="{y - 4}">✗ expected here: {_e(r.label[:120])}</text>')
    parts.append("</g>")
    return "".join(parts)


def _marker(name: str, color: str) -> str:
    return (
        f'<marker id="{name}" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="8" markerHeight="8" '
        f'markerUnits="userSpaceOnUse" orient="auto"><path d="M0,0 L10,5 L0,10 z" fill="{color}"/></marker>'
    )


def svg(ladder: Ladder) -> str:
    """The ladder as an ``<svg>`` element (rows at their first layout; the page's script
    re-stacks them when filtering)."""
    xs = _x(ladder)
    width = max(LEFT + LANE_W * max(len(ladder.lanes), 1), 900)
    height = TOP + ROW_H * len(ladder.rows) + 10
    out = [
        f'<svg id="ladder" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}">',
        f"<defs>{_marker('head', '#335')}{_marker('xhead', '#d00')}</defs>",
    ]
    for ln in ladder.lanes:
        x = xs[ln.id]
        tip = ", ".join(ln.addrs) or ln.id
        out.append(
            f'<g class="lane" data-lane="{_e(ln.id)}"><title>{_e(tip)}</title>'
            f'<text x="{x}" y="18" text-anchor="middle">{_e(ln.id)}</text>'
            f'<text x="{x}" y="32" text-anchor="middle" font-weight="normal" font-size="10" fill="#777">'
            f"{_e(ln.addrs[0] if ln.addrs else '')}</text>"
            f'<line x1="{x}" y1="{TOP - 6}" x2="{x}" y2="{height - 10}"/></g>'
        )
    for k, r in enumerate(ladder.rows):
        y = TOP + ROW_H * k
        out.append(_row_svg(r, k, xs, width).replace("<g ", f'<g transform="translate(0,{y})" ', 1))
    out.append("</svg>")
    return "\n".join(out)


def _options(values: Sequence[str], everything: str) -> str:
    opts = [f'<option value="">{_e(everything)}</option>']
    opts += [f'<option value="{_e(v)}">{_e(v)}</option>' for v in values]
    return "".join(opts)


def _findings_html(ladder: Ladder, extra_html: str) -> str:
    if not ladder.findings and not extra_html:
        return ""
    items = []
    for fd in ladder.findings:
        links = " ".join(f'<a class="frame" href="#f{f}">#{f}</a>' for f in fd.frames[:20])
        if len(fd.frames) > 20:
            links += f" … {len(fd.frames) - 20} more"
        if not fd.held and fd.expected_t is not None:
            links += f' <a class="frame" href="#x-{_e(fd.id)}">where it was expected</a>'
        mark = "✓" if fd.held else "✗"
        items.append(
            f'<li id="finding-{_e(fd.id)}" class="{"held" if fd.held else "failed"}">{mark} {_e(fd.text)}'
            + (f"<br>{links}" if links else "")
            + "</li>"
        )
    return f'<aside id="findings">{extra_html}<ul>{"".join(items)}</ul></aside>'


def page(ladder: Ladder, *, extra_html: str = "") -> str:
    """The whole HTML page of ``ladder``; ``extra_html`` (trusted) goes above the findings."""
    convs = sorted({r.conv for r in ladder.rows if r.conv})
    ts = [r.t for r in ladder.rows] or [0.0]
    n_arrows = len(ladder.arrows())
    meta = (
        f"{len(ladder.events)} frames in {n_arrows} arrows, {len(ladder.lanes)} hosts, "
        f"{max(ts) - min(ts):.3f} s; times are seconds since t0; #N is frame N of the pcap"
        + (f" ({_e(ladder.source)})" if ladder.source else "")
    )
    controls = (
        '<div id="controls">'
        f'<label>host <select id="f-host">{_options(ladder.lane_ids(), "all hosts")}</select></label>'
        f'<label>conversation <select id="f-conv">{_options(convs, "all")}</select></label>'
        '<label>from <input id="f-t0" type="number" step="any" placeholder="t0"> s</label>'
        '<label>to <input id="f-t1" type="number" step="any" placeholder="end"> s</label>'
        '<button id="f-reset" type="button">reset</button>'
        " <small>(shift-click two rows to zoom between them)</small></div>"
    )
    js = JS % {"top": TOP, "row_h": ROW_H}
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{CSP}">
<title>{_e(ladder.title or "ladder")}</title>
<style>{CSS}</style></head>
<body>
<header><h1>{_e(ladder.title or "ladder")}</h1><div class="meta">{meta}</div>{controls}</header>
<main>{_findings_html(ladder, extra_html)}<div id="diagram">
{svg(ladder)}
</div></main>
<script>{js}</script>
</body></html>
"""
