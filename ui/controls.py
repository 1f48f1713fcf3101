"""The sidebar: preset and settings widgets -> a RunConfig, kept in the page's URL.

The URL is the shareable state. ``read_query`` turns it into a ``Choice`` (a preset, the
settings that differ from it, compare on/off, hidden controls) and names every parameter
it had to ignore; ``write_query`` is its inverse. Both go through ``RunConfig.from_query`` /
``to_query``, relative to the preset, so ``?preset=noisy-bn`` is a whole link. Widgets are
seeded from the config once and never given a default value, so the session state alone
decides what they show.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import streamlit as st

from bnviz.config import (ACTIVATIONS, ARCHS, CNN_FIRST_CHANNELS, DATASETS, INITS, LIMITS, NORM_POSITIONS, NORMS,
                          OPTIMIZERS, RUNNING_STATS_NORMS, SCHEDULES, RunConfig, field_names)
from bnviz.presets import DEFAULT_PRESET, PRESETS, Preset
from bnviz.serve.settings import SERVER_PARAM
from bnviz.style import NORM_LABELS
from ui import explain
from ui import state as keys

LOG_GRID = tuple(float(f"{m}e{e}") for e in range(-4, 1) for m in range(1, 10)) + (10.0,)  # 1e-4 .. 10: 1, 2, .. 9 per decade
WIDTHS = (8, 16, 32, 50, 64, 100, 128, 200, 256, 512, 1024)
BATCH_SIZES = (1, 8, 16, 32, 60, 64, 128, 256, 512, 1024, 2048)
STEPS = (100, 200, 500, 1000, 2000, 3000, 5000, 10_000, 20_000, 50_000, 100_000, 200_000)
BASIC = ("norm", "norm_position", "groups", "bn_momentum", "dropout", "activation", "init", "init_sigma", "lr",
         "depth", "width", "optimizer",
         "schedule", "batch_size", "dataset", "seed", "steps")
# Every other field a URL can set has a widget too, in the sidebar's "Advanced" section (open when
# one of them differs from the preset): a link cannot set what the page does not show.
ADVANCED = ("arch", "noise_mean", "noise_std", "record_every", "eval_every", "eval_size", "landscape_every")
SETTINGS = BASIC + ADVANCED  # RunConfig fields with a widget: all of them
HIDEABLE = ("preset", *SETTINGS, "compare")
NORMS_PARAM = "norms"  # URL parameter: the norms compared side by side, comma-separated (default: the preset's)
DROPOUTS = (0.0, 0.1, 0.2, 0.3, 0.5, 0.7, 0.9)
MOMENTA = (0.0001, 0.001, 0.01, 0.1, 0.3, 1.0)
TRUE, FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")
MAX_URL_FIELDS = 1000  # Streamlit drops a query string of more parameters than this (CLIENT_STATE_QUERY_STRING_MAX_FIELDS)
MAX_URL_LENGTH = 512 * 1024  # or of more characters (CLIENT_STATE_QUERY_STRING_MAX_LENGTH)


@dataclass(frozen=True)
class Choice:
    """Everything the sidebar decides."""

    preset: Preset
    config: RunConfig
    compare: bool = False
    hidden: tuple[str, ...] = ()  # widget keys not drawn, in the URL's order
    warnings: tuple[str, ...] = field(default=(), compare=False)
    norms: tuple[str, ...] = ()  # the norms compared side by side; () = the preset's comparison (compared_norms)

    def configs(self, max_runs: int) -> list[RunConfig]:
        """The runs to start: one, or one per compared norm that applies to this network (same
        seed: same data order and weights)."""
        if not self.compare:
            return [self.config]
        return [self.config.paired_with(norm=norm) for norm in self.compared_norms()][:max_runs]

    def compared_norms(self) -> tuple[str, ...]:
        """The chosen set (or the preset's plus the chosen norm), less those this network cannot
        have (``applicable``: instancenorm on the MLP, groups that do not divide)."""
        chosen = self.norms or compared_norms(self.preset, self.config.norm)
        return tuple(norm for norm in chosen if applicable(self.config, norm))


def applicable(config: RunConfig, norm: str) -> bool:
    """Whether this network can have ``norm`` (RunConfig says where a norm does not apply)."""
    try:
        config.paired_with(norm=norm)
    except ValueError:
        return False
    return True


def compared_norms(preset: Preset, norm: str) -> tuple[str, ...]:
    """The preset's comparison, plus the chosen norm when the preset does not compare it."""
    return preset.compare + (() if norm in preset.compare else (norm,))


def read_query(params: dict[str, str], repeated: dict[str, list[str]] | None = None) -> Choice:
    """A Choice from URL parameters (the last of each key, as Streamlit reads them); every parameter
    that cannot be used becomes a warning, and so does each key the URL repeats (``repeated``: its values)."""
    warnings = [f"URL parameter {plain(key)} appears {len(values)} times ({plain(', '.join(values))}); "
                f"using the last, {plain(values[-1])}" for key, values in (repeated or {}).items()]
    name = params.get("preset", DEFAULT_PRESET)
    if name not in PRESETS:
        warnings.append(f"preset {plain(name)} is unknown; using {DEFAULT_PRESET} (presets: {', '.join(PRESETS)})")
        name = DEFAULT_PRESET
    preset = PRESETS[name]
    changes = {}
    for key, text in params.items():
        if key in ("preset", "compare", "hide", NORMS_PARAM, SERVER_PARAM):
            continue
        if key not in field_names():
            warnings.append(f"URL parameter {plain(key)} is not a setting; ignored")
            continue
        try:
            changes[key] = getattr(RunConfig.from_dict({**preset.config.to_dict(), key: text}), key)  # in the preset's context
        except ValueError as error:
            fallback = getattr(preset.config, key)
            warnings.append(f"URL parameter {key}: {plain(str(error))}; using {plain(str(fallback))}")
    compare = params.get("compare", "0").lower()
    if compare not in TRUE + FALSE:
        warnings.append(f"URL parameter compare={plain(compare)} is not 1 or 0; comparison off")
    hidden = [key.strip() for key in params.get("hide", "").split(",") if key.strip()]
    for key in hidden:
        if key not in HIDEABLE:
            warnings.append(f"hide: {plain(key)} is not a control (controls: {', '.join(HIDEABLE)})")
    hidden = tuple(dict.fromkeys(key for key in hidden if key in HIDEABLE))
    norms = tuple(dict.fromkeys(norm.strip().lower() for norm in params.get(NORMS_PARAM, "").split(",") if norm.strip()))
    for norm in norms:
        if norm not in NORMS:
            warnings.append(f"{NORMS_PARAM}: {plain(norm)} is not a norm (norms: {', '.join(NORMS)})")
    try:
        config = preset.config.replace(**changes)
    except ValueError as error:  # each setting was valid alone, not together (instancenorm on the MLP)
        warnings.append(f"URL parameters: {plain(str(error))}; using the preset's settings")
        config = preset.config
    return Choice(preset, config, compare in TRUE, hidden, tuple(warnings),
                  tuple(norm for norm in norms if norm in NORMS))


def write_query(choice: Choice) -> dict[str, str]:
    """URL parameters for a Choice: the preset and only the settings that differ from it."""
    mine, theirs = choice.config.to_query(), choice.preset.config.to_query()
    query = {"preset": choice.preset.name}
    for key in field_names():
        if key in mine or key in theirs:
            value = mine.get(key, str(getattr(choice.config, key)))  # str(): the default, formatted as to_query does
            if value != theirs.get(key, str(getattr(RunConfig(), key))):
                query[key] = value
    if choice.compare:
        query["compare"] = "1"
    if choice.hidden:
        query["hide"] = ",".join(choice.hidden)
    if choice.norms:
        query[NORMS_PARAM] = ",".join(choice.norms)
    return query


def plain(text: str, limit: int = 200) -> str:
    """Untrusted text made literal inside Streamlit markdown: every ASCII punctuation escaped."""
    text = "".join(ch for ch in str(text)[:limit] if ch.isprintable())
    return "".join("\\" + ch if ch in "\\`*_{}[]()<>#+-.!|~:$&\"'=%@;,/?^" else ch for ch in text)


def sidebar() -> Choice:
    """Draw the controls; returns the current choice (``keep_url`` writes it into the URL)."""
    state = st.session_state
    if keys.CHOICE not in state:
        repeated = {key: st.query_params.get_all(key) for key in st.query_params}
        state[keys.CHOICE] = read_query(st.query_params.to_dict(), {k: v for k, v in repeated.items() if len(v) > 1})
    choice: Choice = state[keys.CHOICE]
    with st.sidebar:
        st.header("Settings")
        values = _widgets(choice)
    config = choice.config
    try:
        config = config.replace(**values)
    except ValueError as error:  # widgets stay inside LIMITS; this is a guard, shown not raised
        st.sidebar.error(str(error))
    preset = PRESETS[state.get(keys.PRESET, choice.preset.name)]
    norms = tuple(state.get(keys.COMPARE_NORMS, choice.norms))
    if norms == compared_norms(preset, config.norm):
        norms = ()  # the preset's own set: not repeated in the URL
    new = Choice(preset, config, bool(state.get(keys.COMPARE, choice.compare)), choice.hidden,
                 choice.warnings if config == choice.config else (), norms)
    state[keys.CHOICE] = new
    return new


def keep_url(choice: Choice, marker: dict[str, str]) -> None:
    """Keep the URL in step with the choice, plus ``marker`` (parameters that are not settings); written
    after the toolbar, so a click's run already marks the page whose run it started."""
    query = write_query(choice) | marker
    if st.query_params.to_dict() != query:
        st.query_params.from_dict(query)


def dropped_link_warning() -> None:
    """A warning, drawn by the browser, when the link had more parameters (or characters) than
    Streamlit reads: it then drops all of them, says so only in its log, and the page would
    silently show the default preset. The browser still knows the URL it opened. The HTML is a
    constant: nothing from the URL goes into it (the script writes its numbers as text)."""
    st.html(DROPPED_LINK_HTML, unsafe_allow_javascript=True)


DROPPED_LINK_HTML = f"""<div id="bnviz-dropped" role="alert" style="display:none; padding:0.75rem 1rem;
    border-radius:0.5rem; background:rgba(255,189,69,0.2); color:rgb(146,108,5)"></div>
    <script>(() => {{
      const entry = performance.getEntriesByType("navigation")[0];
      const query = new URL(entry ? entry.name : window.location.href).search.slice(1);
      const fields = query ? query.split("&").length : 0;
      if (fields <= {MAX_URL_FIELDS} && query.length <= {MAX_URL_LENGTH}) return;
      const box = document.getElementById("bnviz-dropped");
      box.textContent = "This link has " + fields.toLocaleString("en") + " parameters (" +
        query.length.toLocaleString("en") + " characters); the server reads at most " +
        "{MAX_URL_FIELDS:,} parameters and {MAX_URL_LENGTH:,} characters, so it ignored all of them: " +
        "the page shows the default settings. Shorten the link.";
      box.style.display = "block";
    }})();</script>"""


def _apply_preset() -> None:
    """on_change of the preset box: its settings replace the widgets' (which re-seed from it)."""
    state = st.session_state
    old: Choice = state[keys.CHOICE]
    state[keys.CHOICE] = Choice(PRESETS[state[keys.PRESET]], PRESETS[state[keys.PRESET]].config, old.compare, old.hidden)
    for key in (*SETTINGS, keys.COMPARE_NORMS):
        state.pop(key, None)


def _widgets(choice: Choice) -> dict:
    """One widget per visible setting; returns {field: value} for those drawn."""
    config, hidden, state = choice.config, choice.hidden, st.session_state
    seeds = {key: getattr(config, key) for key in SETTINGS} | {"preset": choice.preset.name, "compare": choice.compare}
    for key, value in seeds.items():
        if key not in state:
            state[key] = value
    show = {key: key not in hidden for key in HIDEABLE}
    cnn = state.arch == "cnn"
    if show["preset"]:
        st.selectbox("Preset", tuple(PRESETS), key=keys.PRESET, on_change=_apply_preset,
                     help="\n".join(f"- **{p.name}**: {p.summary}" for p in PRESETS.values()))
    if show["norm"]:
        st.radio("Normalization", NORMS, key="norm", format_func=NORM_LABELS.get, horizontal=True,
                 help="\n".join(f"- {explain.NORMS[norm]}" for norm in NORMS))
        st.caption(explain.NORMS[state.norm])
    if show["norm_position"]:
        st.radio("Norm placement", NORM_POSITIONS, key="norm_position", horizontal=True,
                 disabled=state.norm == "none" and not state[keys.COMPARE],
                 format_func=lambda p: f"{p} the activation")
    if show["groups"] and (state.norm == "groupnorm" or state[keys.COMPARE]):
        channels = CNN_FIRST_CHANNELS if cnn else state.width
        st.select_slider("GroupNorm groups", sorted({g for g in range(1, channels + 1) if channels % g == 0}
                                                    | {state.groups}), key="groups",
                         help="Channels are split into this many groups; each example is normalized within each "
                              "group. 1 group is LayerNorm, one per channel is InstanceNorm.")
    if show["bn_momentum"] and (state.norm in RUNNING_STATS_NORMS or state[keys.COMPARE]):
        _log_slider("BN running-average momentum", "bn_momentum", MOMENTA,
                    help="How fast BatchNorm's running mean and variance (used in evaluation) follow the batches: "
                         "torch's default is 0.1; a small value makes them lag behind training.")
    if show["dropout"]:
        st.select_slider("Dropout", sorted(set(DROPOUTS) | {state.dropout}), key="dropout",
                         format_func=lambda v: f"{v:g}",
                         help="Rate of the dropout at the end of every hidden block (after the activation and a "
                              "norm placed after it); off in evaluation.")
    if show["activation"]:
        st.selectbox("Activation", ACTIVATIONS, key="activation")
    if show["init"]:
        st.selectbox("Weight init", INITS, key="init")
    if show["init_sigma"]:
        _log_slider("Gaussian init σ", "init_sigma", LOG_GRID, disabled=state.init != "gaussian")
    if show["lr"]:
        _log_slider("Learning rate", "lr", LOG_GRID, help="Changes apply live to a running run.")
    if show["depth"]:
        st.slider("Hidden layers", *LIMITS["depth"], key="depth", disabled=cnn,
                  help="The CNN preset has fastai's fixed 4 conv layers." if cnn else None)
    if show["width"]:
        _log_slider("Units per layer", "width", WIDTHS, disabled=cnn)
    if show["optimizer"]:
        st.selectbox("Optimizer", OPTIMIZERS, key="optimizer")
    if show["schedule"]:
        st.selectbox("Schedule", SCHEDULES, key="schedule")
    if show["batch_size"]:
        _log_slider("Batch size", "batch_size", BATCH_SIZES)
    if show["dataset"]:
        st.selectbox("Dataset", DATASETS, key="dataset", help="\n".join(f"- **{name}**: {explain.DATASETS[name]}"
                                                                         for name in DATASETS))
    if show["seed"]:
        st.number_input("Seed", *LIMITS["seed"], key="seed", step=1)
    if show["steps"]:
        _log_slider("Steps", "steps", STEPS)
    if show["compare"]:
        default = compared_norms(PRESETS[state[keys.PRESET]], state.norm)
        labels = " vs ".join(NORM_LABELS[n] for n in default)
        st.toggle("Compare side by side", key=keys.COMPARE, help=f"Runs {labels} with the same seed.")
        if state[keys.COMPARE]:
            if keys.COMPARE_NORMS not in state:
                state[keys.COMPARE_NORMS] = list(choice.norms or default)
            st.multiselect("Norms side by side", NORMS, key=keys.COMPARE_NORMS, format_func=NORM_LABELS.get,
                           help="Paired: same seed, same data order, same initial weights; one colour scale and "
                                "the same bins for all.")
            left_out = [NORM_LABELS[n] for n in state[keys.COMPARE_NORMS] if not applicable(config, n)]
            if left_out:
                st.caption(f"Left out, as they do not apply to this network: {', '.join(left_out)} "
                           "(InstanceNorm needs the CNN; GroupNorm's groups must divide the units).")
    preset = PRESETS[state[keys.PRESET]].config
    changed = any(show[key] and state[key] != getattr(preset, key) for key in ADVANCED)
    with st.expander("Advanced", expanded=changed):
        _advanced(show, state)
    return {key: state[key] for key in SETTINGS if show[key] and key in state}


def _advanced(show: dict, state) -> None:
    """The settings a preset or a link sets and most lessons leave alone; each costs time or memory
    (the budget counts them)."""
    noisy = state.norm in ("noisy-batchnorm", "noise") or state[keys.COMPARE]
    if show["arch"]:
        st.selectbox("Network", ARCHS, key="arch", format_func={"mlp": "MLP", "cnn": "fastai's CNN"}.get,
                     help="The CNN is the fastai chapter's 4 stride-2 convolutions; depth and width do not apply.")
    if show["noise_mean"]:
        st.number_input("Noise mean range", *LIMITS["noise_mean"], key="noise_mean", step=0.05, disabled=not noisy,
                        help="Noisy BN: each step's noise mean is drawn from U(-this, this).")
    if show["noise_std"]:
        st.number_input("Noise std range", *LIMITS["noise_std"], key="noise_std", step=0.05, disabled=not noisy,
                        help="Noisy BN: each step's noise std is drawn from U(1, this).")
    if show["record_every"]:
        st.number_input("Record every (steps)", *LIMITS["record_every"], key="record_every", step=1)
    if show["eval_every"]:
        st.number_input("Evaluate every (steps)", *LIMITS["eval_every"], key="eval_every", step=50,
                        help="Held-out accuracy; each evaluation costs about a third of a step per 1,000 examples.")
    if show["eval_size"]:
        st.number_input("Held-out examples", *LIMITS["eval_size"], key="eval_size", step=100)
    if show["landscape_every"]:
        st.number_input("Landscape probe every (steps, 0 = off)", *LIMITS["landscape_every"], key="landscape_every",
                        step=10, help="Santurkar et al.'s smoothness probe: five extra forward and backward passes.")


def _log_slider(label: str, key: str, grid: tuple, **options) -> None:
    """A select_slider over a fixed grid plus the current value (a URL may hold any valid value)."""
    value = st.session_state[key]
    st.select_slider(label, sorted(set(grid) | {value}), key=key, format_func=lambda v: f"{v:g}", **options)
