"""Every user-visible string of the app, in one place."""

TITLE = "braindiff: Brain-Diffuser explorer"
INTRO = (
    "Reconstructions of the images a person saw, decoded from their fMRI activity with "
    "[Brain-Diffuser](https://arxiv.org/abs/2303.05334): a VDVAE first guess (stage 1), refined by Versatile "
    "Diffusion guided by predicted CLIP features (stage 2)."
)
NO_BUNDLE = (
    "**No bundle yet.** Run `braindiff demo build` to make the demo bundles, or `braindiff reconstruct` on your "
    "own data; bundles are searched in: {dirs}."
)
BROKEN_BUNDLES = "Some folders could not be opened as bundles:\n\n{problems}"
TIER_LABEL = {"demo": "simulated subject (demo)", "real": "NSD"}

BROWSE_TAB = "Browse"
SUBJECT = "Subject"
TRIAL = "Test trial"
JUMP_ID = "Jump to image id"
JUMP = "Go"
SEARCH = "Search captions"
SEARCH_PLACEHOLDER = "e.g. face, red, building"
SHOW_ABLATIONS = "Show ablations"
RESULTS = "Matching trials (click one)"
REFRESH = "Rescan bundles"
CAPTION = "Captions"
METRICS = "This trial's metrics"
NOT_EVALUATED = "_No metrics in this bundle yet: run `braindiff evaluate {path}`._"
NO_MATCH = "No trial of {bundle} matches {query!r}."
UNKNOWN_ID = "Image id {trial_id} is not among {bundle}'s test trials."
SEARCH_HITS = "{n} trial(s) match {query!r}{more}."


def subject_label(subject: str, tier: str, name: str) -> str:
    """Dropdown label of a bundle, e.g. 'Subject 1 (simulated subject (demo))'."""
    who = "Average of subjects" if subject == "average" else f"Subject {subject}"
    return f"{who} · {TIER_LABEL.get(tier, tier)} · {name}"
