"""The status page's style sheet, inline in the page: no external asset to fetch or to go missing.

Two colours are kept for one meaning each, so that a screenshot can be checked by its pixels: the
zombie tile is filled with ``ZOMBIE_RED`` only when there are zombies, and ``STRIP_EDGE`` is the
line under the summary strip.
"""

ZOMBIE_RED = "#b00020"
STRIP_EDGE = "#30475e"
ALARM = "#c62828"  # other alarms (database down, oldest over its limit): a red border, not a red fill

STYLE = f"""
* {{ box-sizing: border-box; }}
body {{ font: 14px/1.45 system-ui, sans-serif; margin: 0; color: #1f2328; background: #f4f5f7; }}
header {{ display: flex; flex-wrap: wrap; align-items: baseline; gap: .3em 1em; padding: .7em 1.5em;
  background: #fff; }}
h1 {{ font-size: 1.35em; margin: 0; }}
nav {{ margin-left: auto; }} nav a {{ margin-left: 1em; color: #0a58ca; }}
.badge {{ background: #fff3cd; border: 1px solid #c9a227; border-radius: 4px; padding: 0 .5em; }}
#summary {{ display: grid; grid-template-columns: repeat(auto-fit, minmax(12.5em, 1fr)); gap: .7em;
  padding: .8em 1.5em 1em; background: #fff; border-bottom: 4px solid {STRIP_EDGE}; }}
.tile {{ border: 2px solid #d0d7de; border-radius: 6px; padding: .45em .8em; background: #fff; }}
.tile h2 {{ font-size: .78em; text-transform: uppercase; letter-spacing: .05em; color: #57606a; margin: 0; }}
.tile p {{ margin: 0; }} .tile .big {{ font-size: 1.7em; font-weight: 600; line-height: 1.25; }}
.tile.ok {{ border-color: #2da44e; }} .tile.ok .big {{ color: #17692c; }}
.tile.warn {{ border-color: #c9a227; }}
.tile.alarm {{ border-color: {ALARM}; }} .tile.alarm .big {{ color: {ALARM}; }}
.tile.zombies.present {{ background: {ZOMBIE_RED}; border-color: {ZOMBIE_RED}; color: #fff; }}
.tile.zombies.present h2, .tile.zombies.present .big {{ color: #fff; }}
main {{ display: grid; grid-template-columns: minmax(0, 1fr); gap: 0 2.5em; padding: 0 1.5em 1.5em; }}
@media (min-width: 64em) {{ main {{ grid-template-columns: minmax(0, 1fr) minmax(0, 1fr); }} }}
h2 {{ font-size: 1.1em; margin: 1.2em 0 .4em; }} h3 {{ font-size: 1em; margin: 1em 0 .3em; }}
table {{ border-collapse: collapse; width: 100%; background: #fff; }}
td, th {{ padding: 3px 10px; text-align: left; border-bottom: 1px solid #e6e8eb; }}
th {{ border-bottom: 1px solid #8c959f; font-weight: 600; }}
.n {{ text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }}
td.barcell {{ width: 45%; }} .bar {{ display: block; height: .9em; min-width: 3px; background: #4a78b5; }}
.zombie {{ color: {ZOMBIE_RED}; font-weight: bold; }}
.note {{ color: #57606a; font-size: .92em; }} .ids code {{ margin-right: .6em; }}
code {{ background: #eaeef2; border-radius: 3px; padding: 0 .3em; }}
.hint code {{ white-space: nowrap; }}
section {{ overflow-x: auto; }}  /* a wide table scrolls in its column rather than being cut */
"""
