"""The viewer's web page: slice views on the left, the selected lesion's panel and the lesion table on the right.

Only page structure lives here; every value shown is trame state that :mod:`LesionXAILib.viewer.app`
fills from the MRML bridge. Element ids (``lx-*``) are stable so tests and the benchmark can find them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from LesionXAILib.viewer.app import LesionViewer

PANEL_WIDTH_PX = 440
SELECT_ROW_TRIGGER = "lx_select_row"
APP_BAR_HEIGHT_PX = 48

PAGE_STYLE = """
.lx-panel { width: %(w)dpx; min-width: %(w)dpx; overflow-y: auto; padding: 10px 12px; border-left: 1px solid #333; }
.lx-views { flex: 1 1 auto; min-width: 0; display: flex; }
.lx-legend-bar { height: 12px; border-radius: 2px; border: 1px solid #555; }
.lx-view-label { position: absolute; top: 4px; left: 6px; font: 12px sans-serif; color: #ddd; pointer-events: none;
                 text-shadow: 0 0 2px #000; }
.lx-slice-slider { position: absolute; bottom: 0; left: 0; width: 100%%; }
.lx-row { cursor: pointer; }
.lx-row-selected { background: rgba(79, 127, 214, 0.35); }
.lx-stats td { padding: 2px 6px !important; height: auto !important; }
#lx-table td, #lx-table th { padding: 0 6px !important; }
.lx-cf-text { font: 12px sans-serif; white-space: pre-wrap; }
.lx-similar-cell { width: 76px; margin: 0 6px 6px 0; }
.lx-similar-crop { image-rendering: pixelated; border: 1px solid #555; }
""" % {"w": PANEL_WIDTH_PX}


def slice_view_ui(server: Any, view_id: str, view: Any) -> None:
    """Populate one slice view's overlay: its name (a stable marker for tests) and a slice slider."""
    from trame.widgets import html
    from trame_slicer.app.logic.slice_view_logic import connect_slice_view_slider_to_state
    from trame_slicer.app.ui.slider import Slider

    name = view.get_singleton_tag()
    html.Div(f"{name} · {view.get_orientation()}", classes="lx-view-label", id=f"lx-view-{name}")
    with html.Div(classes="lx-slice-slider"):
        Slider(typed_state=connect_slice_view_slider_to_state(server, view), dense=True, theme="dark")


def three_d_view_ui(server: Any, view_id: str, view: Any) -> None:
    """Populate the 3D view's overlay with its marker label."""
    from trame.widgets import html

    name = view.get_singleton_tag()
    html.Div("3D", classes="lx-view-label", id=f"lx-view-{name}")


def build_page(viewer: "LesionViewer", title: str) -> Any:
    """Build and return the trame page layout of ``viewer``."""
    from trame.ui.vuetify3 import VAppLayout
    from trame.widgets import client, html
    from trame.widgets import vuetify3 as v3

    server = viewer.server
    with VAppLayout(server, full_height=True, theme="dark") as page:
        client.Style(PAGE_STYLE)
        with v3.VAppBar(density="compact", height=APP_BAR_HEIGHT_PX):
            v3.VToolbarTitle(title, id="lx-app-title")
            v3.VSpacer()
            html.Div("{{ lx_summary }}", id="lx-summary", classes="text-caption mr-4")
            v3.VProgressLinear(
                v_show=("lx_busy",), model_value=("lx_progress",), absolute=True, location="bottom", color="primary",
                id="lx-appbar-progress",
            )  # fmt: skip
        with v3.VMain():
            with html.Div(style=f"display: flex; height: calc(100vh - {APP_BAR_HEIGHT_PX}px);"):
                with html.Div(classes="lx-views", id="lx-views"):
                    viewer.layout_manager.initialize_layout_grid(page)
                with html.Div(classes="lx-panel", id="lx-panel"):
                    _selection_card(viewer)
                    _overlay_controls()
                    _statistics(viewer)
                    _cases(viewer)
                    _lesion_table(viewer)
    return page


def _selection_card(viewer: "LesionViewer") -> None:
    from trame.widgets import html
    from trame.widgets import vuetify3 as v3

    with html.Div(classes="d-flex align-center mb-1"):
        html.Div("{{ lx_title }}", id="lx-title", classes="text-h6")
        v3.VSpacer()
        v3.VChip("{{ lx_status }}", v_if=("lx_status",), color=("lx_status_color",), size="small", id="lx-status")
    html.Div("{{ lx_message }}", id="lx-message", classes="text-caption text-medium-emphasis mb-1")
    with html.Div(v_show=("lx_busy",), id="lx-progress", classes="mb-2"):
        v3.VProgressLinear(model_value=("lx_progress",), color="primary", height=8, rounded=True)
        with html.Div(classes="d-flex align-center"):
            html.Div("{{ lx_progress_message }}", classes="text-caption", id="lx-progress-message")
            v3.VSpacer()
            v3.VBtn("Cancel", size="x-small", variant="text", click=viewer.cancel, id="lx-cancel")
    v3.VAlert(
        v_if=("lx_error",), text=("lx_error",), type="error", density="compact", closable=True, classes="mb-2",
        id="lx-error",
    )  # fmt: skip


def _overlay_controls() -> None:
    from trame.widgets import html
    from trame.widgets import vuetify3 as v3

    v3.VSelect(
        label="Overlay", v_model=("lx_overlay",), items=("lx_overlay_items",), density="compact", hide_details=True,
        classes="mb-2", id="lx-overlay",
    )  # fmt: skip
    v3.VSlider(
        label="Opacity", v_model=("lx_opacity",), min=0.0, max=1.0, step=0.05, density="compact", hide_details=True,
        thumb_label=True, id="lx-opacity",
    )  # fmt: skip
    with html.Div(id="lx-legend", classes="mb-3", v_show=("lx_legend.gradient !== 'none'",)):
        html.Div(classes="lx-legend-bar", style=("{ background: lx_legend.gradient }",))
        with html.Div(classes="d-flex text-caption"):
            html.Span("{{ lx_legend.min }}")
            v3.VSpacer()
            html.Span("{{ lx_legend.units }}")
            v3.VSpacer()
            html.Span("{{ lx_legend.max }}")


def _statistics(viewer: "LesionViewer") -> None:
    from trame.widgets import html
    from trame.widgets import vuetify3 as v3

    with v3.VTable(density="compact", classes="lx-stats mb-2", id="lx-stats"):
        with html.Tbody():
            with html.Tr(v_for="row in lx_stats", key="row.label"):
                html.Td("{{ row.label }}", classes="text-medium-emphasis")
                html.Td("{{ row.value }}")
    html.Div(v_html=("lx_curve_svg",), id="lx-curve", classes="mb-3")


def _cases(viewer: "LesionViewer") -> None:
    """The counterfactual action and its summary, then the similar-lesions panel (with ``--library``)."""
    from trame.widgets import html
    from trame.widgets import vuetify3 as v3

    with html.Div(classes="d-flex align-center mb-1"):
        v3.VBtn(
            "Counterfactual", size="small", variant="tonal", click=viewer.cases.request_counterfactual,
            disabled=("lx_selected_id === null || lx_busy",), id="lx-counterfactual",
        )  # fmt: skip
        v3.VSpacer()
        v3.VBtn("Show explanation", size="small", variant="text", v_show=("lx_cf_shown",), click=viewer.cases.show_explanation,
                id="lx-show-explanation")  # fmt: skip
    html.Pre("{{ lx_cf_text }}", v_show=("lx_cf_text",), id="lx-cf-text", classes="lx-cf-text mb-2")
    with html.Div(v_if=("lx_similar_enabled",), id="lx-similar", classes="mb-3"):
        html.Div("Similar lesions", classes="text-subtitle-2")
        html.Div("{{ lx_similar_message }}", id="lx-similar-message", classes="text-caption text-medium-emphasis mb-1")
        with html.Div(classes="d-flex flex-wrap"):
            with html.Div(v_for="row in lx_similar_rows", key="row.rank", id=("`lx-similar-row-${row.rank}`",),
                          classes="lx-similar-cell"):  # fmt: skip
                html.Img(src=("row.thumbnail",), width=64, height=64, classes="lx-similar-crop")
                html.Div("{{ row.status }} · {{ row.distance.toFixed(3) }}", classes="text-caption")
                html.Div("{{ row.subject }} #{{ row.id }}", classes="text-caption text-medium-emphasis")


def _lesion_table(viewer: "LesionViewer") -> None:
    from trame.widgets import html
    from trame.widgets import vuetify3 as v3

    from LesionXAILib.viewer.panel import RAW_COLUMNS, TABLE_COLUMNS

    # a named trigger (not trame's generated one): scripts and the security tests call it by this name
    viewer.server.controller.trigger(SELECT_ROW_TRIGGER)(viewer.select_from_table)
    with v3.VDataTable(
        headers=("lx_headers",), items=("lx_rows",), item_value="id", density="compact", items_per_page=-1,
        hover=True, id="lx-table", sort_by=("lx_sort", [{"key": "id", "order": "asc"}]),
    ):  # fmt: skip
        with v3.Template(v_slot_item="{ item }"):
            with html.Tr(
                click=f"trigger('{SELECT_ROW_TRIGGER}', [item.id])",
                classes=("item.id === lx_selected_id ? 'lx-row lx-row-selected' : 'lx-row'",),
                id=("`lx-row-${item.id}`",),
            ):
                for key, _ in TABLE_COLUMNS:  # the same columns, in the same order, as the headers
                    html.Td("{{ item.%s }}" % (key if key in RAW_COLUMNS else f"{key}_text"))
        # pagination footer hidden: all lesions on one scrollable list
        v3.Template(v_slot_bottom=True)

