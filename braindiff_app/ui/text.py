"""Every user-visible string of the app, in one place."""

# The image kinds' names come from the bundle format, shared with the report tables (the app and the README's
# tables say the same words in Browse, Classroom, Metrics and the alt texts).
from braindiff_app.bundles import KIND_LABELS

TITLE = "braindiff: Brain-Diffuser explorer"
INTRO = (
    "Reconstructions of the images a person saw, decoded from their fMRI activity with "
    "[Brain-Diffuser](https://arxiv.org/abs/2303.05334): a VDVAE first guess (stage 1), refined by Versatile "
    "Diffusion guided by predicted CLIP features (stage 2)."
)
NO_BUNDLE = "**No {tier} bundle yet.** {how} Bundles are searched in: {dirs}."
NO_BUNDLE_HOW = {
    "demo": "Run `braindiff demo build` to make the demo bundles (or `braindiff reconstruct` on your own data).",
    "real": "Run `braindiff reconstruct` on your prepared NSD subjects (`braindiff doctor` lists what is missing).",
}
OTHER_BUNDLES = "The bundles of the other tier that were found are listed under Subject."


def no_bundle(tier: str, dirs) -> str:
    """The "no bundle of this tier yet" message, with how to make one and where bundles are searched."""
    return NO_BUNDLE.format(tier=TIER_LABEL[tier], how=NO_BUNDLE_HOW[tier], dirs=", ".join(f"`{d}`" for d in dirs))
BROKEN_BUNDLES = "Some folders could not be opened as bundles:\n\n{problems}"
TIER_LABEL = {"demo": "simulated subject (demo)", "real": "NSD"}

BROWSE_TAB = "Browse"
SUBJECT = "Subject"
TRIAL = "Test trial"
JUMP_ID = "Jump to image id"
JUMP = "Go"
JUMP_PLACEHOLDER = "e.g. 97, then Enter"
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
URL_NO_BUNDLE = "The link names the bundle '{subject}', which this app does not have; showing {shown}."
URL_BAD_IMAGE = "The link's image '{image}' is not an image id (a whole number)."
URL_BAD_TAB = "The link's tab '{tab}' is not one of {tabs}; showing Browse."
URL_FIRST_TRIAL = "Showing the first trial."
JUMP_NOT_A_NUMBER = "Jump to image id: '{typed}' is not an image id (a whole number, e.g. 97)."
OUT_OF_RANGE = "{label}: {value} is outside {low}..{high}; {used} was used."
OUT_OF_RANGE_EMPTY = "{label}: the box was empty; {used} was used."
OUT_OF_RANGE_NOT_FINITE = "{label}: {value} is not a finite number; {used} was used."
CEILING_NOTE = ("_Made from the seen image's own VDVAE and CLIP features, with no brain data: what these image "
                "models draw from a perfect read-out of the brain, the ceiling for every subject's reconstructions._")
NOT_STORED = "_Not stored in this bundle: {kinds}._"
QUIZ_NOT_DECODED = ("{bundle}: made from the seen images' own features, not decoded from brain activity; the quiz "
                    "shows reconstructions from a subject's brain: choose a subject.")
METRICS_CEILING = ("_\"True features (ceiling)\": images made from the seen images' own features (no brain data), "
                   "the best these image models can do; not part of the mean of subjects._")
SEARCH_HITS = "{n} {trials} {query!r} (every word, whole words or their plurals)."
SEARCH_PAGE = "Showing {first}–{last} of {n} · page {page} of {pages}"
PREV_PAGE = "◀ Previous"
NEXT_PAGE = "Next ▶"
COPY_LINK = "Copy link"
ACROSS_SUBJECTS = ("This image across subjects: the seen image, then each subject's VDVAE guess (\"guess\") and "
                   "final reconstruction (\"final\")")


def alt_text(kind: str, subject: str | None, image_id: int, features: str = "predicted") -> str:
    """Alt text of an image, e.g. 'Final reconstruction, subject 1, image 97' ('Seen image, image 97'; from a
    bundle made from true features: 'Final reconstruction, subject 1's true features (ceiling), image 97')."""
    if subject is None or kind == "ground_truth":
        return f"{KIND_LABELS[kind]}, image {image_id}"
    who = subject_name(subject).lower() + ("'s true features (ceiling)" if features == "true" else "")
    return f"{KIND_LABELS[kind]}, {who}, image {image_id}"


def search_hits(n: int, query: str) -> str:
    """'1 trial matches 'face' (...)' / '47 trials match ...'."""
    return SEARCH_HITS.format(n=n, trials="trial matches" if n == 1 else "trials match", query=query)


ACROSS_KINDS = {"vdvae": "guess", "final": "final"}


def across_caption(kind: str, subject: str | None, image_id: int) -> str:
    """Caption (and alt text) of a thumbnail in Browse's across-subjects row, short enough for it: 'Seen, image
    97', 'Subject 1 · guess', 'Average of subjects · final' (the row's heading, ACROSS_SUBJECTS, names the two
    kinds)."""
    if subject is None or kind == "ground_truth":
        return f"Seen, image {image_id}"
    return f"{subject_name(subject)} · {ACROSS_KINDS[kind]}"


IMAGE_PROBLEM = "⚠ {problem}"


def toast(message: object) -> str:
    """``message`` for a ``gr.Error`` / ``gr.Warning`` toast, which renders HTML (not Markdown): markup escaped, so
    a link's or a file's text (``?subject=<a href=...>``) shows as typed and never as a link or an image; this
    module's own ``**bold**`` and ```code``` become ``<b>`` and ``<code>``. API clients receive the same text."""
    import html
    import re

    escaped = html.escape(str(message), quote=False)
    escaped = re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", escaped)
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", escaped)


def plain(value: str) -> str:
    """``value`` shown as text in Markdown: HTML and Markdown markup escaped (a caption's ``<img>`` stays text)."""
    import html
    import re

    return re.sub(r"([\\`*_\[\]])", r"\\\1", html.escape(value, quote=False))


def subject_name(subject: str) -> str:
    """'Subject 1', or 'Average of subjects' for ``average``."""
    return "Average of subjects" if subject == "average" else f"Subject {subject}"


def subject_choices(subjects: list[str]) -> list[tuple[str, str]]:
    """Dropdown choices (label, value) for the ROI studio's and Brain response's subjects: ('Subject 1', '1');
    the value stays the subject, as their API endpoints take it."""
    return [(subject_name(s), s) for s in subjects]


def subject_label(subject: str, tier: str, name: str, features: str = "predicted") -> str:
    """Dropdown label of a bundle, e.g. 'Subject 1 · simulated subject (demo) · demo-subj01'; a bundle made from the
    seen images' true features says so ('Subject 1, true features (ceiling) · ...')."""
    who = subject_name(subject)
    who += ", true features (ceiling)" if features == "true" else ""
    return f"{who} · {TIER_LABEL.get(tier, tier)} · {name}"

def protocol_label(name: str) -> str:
    """The procedure a bundle was made with (docs/reproduce.md); bundles made before protocols were "braindiff"."""
    return f"protocol {name}" + (" (the paper's code)" if name == "reference" else "")


CLASSROOM_TAB = "Classroom"
QUIZ_INTRO = (
    "### Which image did the person see?\nThe big picture was decoded from a person's brain activity. One of the "
    "four images is what they were looking at. Vote, then click its number (or press 1-4; N for the next "
    "question). **Full screen** (or F) shows only the quiz, large, for a projector; Esc leaves it."
)
QUIZ_KEYS = "Keys: **1-4** vote · **N** next question · **F** / **Esc** leave full screen"
QUIZ_CHOICE_ALT = "Choice {n}: a seen image"
QUIZ_SHOW = "Show"
QUIZ_FINAL = "Final reconstruction"
QUIZ_VDVAE = "Stage-1 guess (harder)"
QUIZ_NEXT = "Next question"
QUIZ_FULLSCREEN = "Full screen"
QUIZ_LEAVE_FULLSCREEN = "Leave full screen"
QUIZ_RECONSTRUCTION = "Decoded from the brain"
QUIZ_START = "Press **Next question** to start."
QUIZ_ASK = "Which one did the person see?"
QUIZ_RIGHT = "**Right!**"
QUIZ_WRONG = "**Not this one:** the person saw image {n}."
QUIZ_SCORE = "Score: {right} / {asked}."
QUIZ_NO_QUESTION = "Press **Next question** first (or N): there is no question to answer yet."
QUIZ_ALREADY = "Already answered: the person saw image {n}. Press **Next question** (or N) for another."
QUIZ_ODDS = ("_How hard is this quiz? Comparing {metric} embeddings alone, a computer picks the seen image in "
             "**{p:.0f}%** of such questions (chance: 25%; measured on this bundle's {n} test trials)._")

ABOUT_TAB = "About"
ABOUT_FIGURE_ALT = ("The two stages: fMRI activity predicts VDVAE latents (stage 1, a blurry first guess) and CLIP "
                    "vision and text features, which guide Versatile Diffusion from that guess to the final image")
ABOUT = """
### How a picture is read back from the brain

While a person looks at a photo in an MRI scanner, the visual parts of their cortex respond. Brain-Diffuser
learns, from thousands of such photos, three simple linear maps (ridge regressions) from that activity to
the internal codes of three image models:

1. **Stage 1, the layout.** A very deep VAE (VDVAE) compresses images into a hierarchy of latent codes. The
   activity predicts the coarse codes; the decoder turns them into a blurry {vdvae_size}×{vdvae_size} *first guess*
   that gets the layout, colours and shapes roughly right.
2. **Stage 2, the meaning.** The activity also predicts what CLIP, a model trained on images and their captions,
   would say about the photo: a *vision* embedding and a *text* embedding. Versatile Diffusion then starts from
   the first guess with noise added ({start_steps} of {steps} denoising steps) and repaints it at
   {image_size}×{image_size} pixels, guided {vision_pct}% by the predicted vision features and {text_pct}% by the
   predicted text features.

These are the settings of the bundles shown here ({tier_label}); the paper's are 64×64, 37 of 50 steps, 512 px,
60% / 40%.

The **ablations** remove one ingredient: the *VDVAE guess* is the first guess itself, *no VDVAE* starts stage 2 from
pure noise (good meaning, wrong layout), *no CLIP-text* and *no CLIP-vision* drop one guide. The **metrics**
compare each reconstruction with the seen image: PixCorr and SSIM for pixels, AlexNet, Inception, CLIP,
EfficientNet and SwAV features for increasingly abstract content (2-way identification: how often the
reconstruction is closer to its own image than to another); the demo tier has the pixel metrics and its own small
CLIP's (demo-CLIP).

The **ROI studio** asks the reverse question: activate only one brain region (say, the face area) and look at the
image the model decodes: the region's "preferred" picture. **Brain response** runs the loop the other way round:
an image's predicted brain activity, decoded back. The **Classroom** turns the reconstructions into a quiz: which
of four images did the person see?
"""
TIER_NOTE = {
    "demo": ("**You are looking at the demo tier: a simulated subject.** Its 'brain' is a model of visual cortex "
             "laid on real cortical anatomy (pycortex's subject S1), responding to procedurally drawn scenes, and its "
             "image models are small ones trained in this repository. The method and the code are the real ones; the "
             "pictures are simpler.\n\n**To switch to real data** (the Natural Scenes Dataset and the real models, on "
             "a GPU): set `BRAINDIFF_NSD_ROOT`, `BRAINDIFF_VDVAE_CHECKPOINT` and `BRAINDIFF_VD_DIR`, check with "
             "`braindiff doctor --tier real`, then run `braindiff prepare`, `extract`, `fit`, `reconstruct` and "
             "`evaluate` for each subject (see the README) and start the app with `--tier real`."),
    "real": ("**You are looking at the real tier: NSD subjects** reconstructed with the real VDVAE and Versatile "
             "Diffusion models. The demo tier (`--tier demo`) shows a simulated subject that runs on any CPU."),
}

METRICS_TAB = "Metrics"
METRICS_INTRO = (
    "Means over test trials, with bootstrap 95% intervals over trials in brackets (↑ higher is better, ↓ lower is "
    "better), for the metrics these bundles hold (the paper has eight; those missing are named below with the "
    "reason). Table 1 compares subjects (final reconstructions); Table 2 compares the ablations of one subject "
    "and puts baselines that know nothing of the brain beside them: a flat image of the mean colour, the mean "
    "image, and the seen image blurred to the VDVAE's resolution (the best a perfect stage 1 could do).\n\n"
    "**PixCorr**: correlation of the pixels of the seen image and the reconstruction. **SSIM**: structural "
    "similarity of the two in grey levels. **SSIM-ref**: the SSIM the paper's code computes (by an old library "
    "quirk, a 1-D SSIM down each pixel column, averaged); the paper's SSIM numbers are this one. Read both SSIMs "
    "against the baselines: a flat image of the mean colour already scores high on them. **Identification** "
    "(CLIP, AlexNet, Inception; demo-CLIP on the demo): how often a reconstruction's features are closer to its "
    "own seen image than to another test image (2-way, chance 50%) or to three others (4-way, chance 25%: the "
    "Classroom quiz's odds). A single trial's value (Browse) is that trial's chance, from 0 to 1."
)
PLOT_BARS1 = "Bar chart of Table 1: each metric's mean per subject"
PLOT_BARS2 = "Bar chart of Table 2: each metric's mean per ablation"
PLOT_DISTRIBUTIONS = "Box plots: each metric's per-trial values per image kind"
NO_BASELINES = "_No baseline rows in this bundle yet: run `braindiff evaluate {path}`._"
MISSING_METRICS = "**Metrics these bundles do not have:**"
MISSING_NETWORK = ("needs the {network} network's ImageNet/CLIP weights, which this install does not carry "
                   "(`braindiff evaluate --download` fetches them; `braindiff doctor` says where they go).")
MISSING_CLIP_DEMO = ("the demo tier measures CLIP identification with its own small CLIP encoder instead "
                     "(demo-CLIP; not comparable to the paper's ViT-L/14 numbers).")
METRICS_BUNDLES = "Bundles in Table 1"
METRICS_ABLATION_BUNDLE = "Bundle for Table 2 and the per-trial distributions"
METRICS_REFRESH = "Update"
METRICS_NONE = ("_None of the chosen bundles has metrics yet: run `braindiff evaluate BUNDLE...` "
                "(the demo bundles come evaluated)._")
TABLE1 = "Table 1: subjects (final reconstructions)"
TABLE2 = "Table 2: ablations of {label}"

ROI_TAB = "ROI studio"
ROI_INTRO = (
    "Activate brain regions and see the image the decoder makes of that activity: the regions' *preferred* "
    "image (the paper's ROI analysis). Pick one of the paper's examples, paint on the flatmap (the brush is red for a "
    "positive paint weight, blue for a negative one; the eraser removes) and/or set region weights (+1 activates, "
    "-1 suppresses), then **Generate**. Each experiment lands in the history with a recipe JSON that re-creates it; "
    "**Copy link** gives an address that opens the same recipe."
)
ROI_SEED = "Seed"
ROI_GENERATE = "Generate"
ROI_CANVAS = "Flatmap (both hemispheres; paint voxels)"
ROI_CANVAS_AVERAGE = "Flatmap: the subject average cannot be painted (its subjects' voxels differ); use region weights"
ROI_PAINT_KEPT = "Painting kept: subject {subject}'s flatmap has the same pixels; the strokes now select its voxels."
ROI_PAINT_DROPPED = "Painting cleared: subject {subject}'s flatmap differs in size from the one painted on."
ROI_PAINT_AVERAGE_DROPPED = "Painting cleared: the subject average cannot be painted (region weights are kept)."
ROI_SHOW_BANDS = "Show eccentricity bands on the flatmap"
ROI_PRESETS = "Examples (the paper's Figure 5 and 7 regions; keyboard: Tab to one, Space to choose it)"
ROI_PRESET_COMBINATION = "V1 + hV4 + faces − V2 − bodies"
ROI_PRESET_EARLY = "early visual (V1 + V2 + V3)"
ROI_PRESET_ABSENT = "Subject {subject} has no {regions} voxels: that example's weight stays 0."
ROI_COPY_LINK = "Copy link"
ROI_LINK = "Link to this recipe"
ROI_LINK_PROBLEM = "No link: {reason}"
ROI_LINK_BAD = "**The link's recipe could not be read.** The studio opened with its defaults. _Why: {reason}_"
ROI_LINK_LOADED = "Opened the recipe from the link: **Generate** makes its image."
ROI_RESTORED = "Controls restored from the recipe of {label}."
ROI_WARMING = "_Loading the ROI models in the background ({seconds:.0f} s so far)..._"
ROI_READY = "_ROI models ready ({seconds:.1f} s to load)._"
ROI_WARM_FAILED = "_The ROI models could not be loaded: {reason}_"
ROI_MAP_LEFT = "LEFT HEMISPHERE"
ROI_MAP_RIGHT = "RIGHT HEMISPHERE"
ROI_MAP_DORSAL = "dorsal (up)"
ROI_MAP_VENTRAL = "ventral (down)"
ROI_MAP_ANTERIOR_LEFT = "<- anterior"
ROI_MAP_ANTERIOR_RIGHT = "anterior ->"
ROI_MAP_POSTERIOR = "posterior"
ROI_AT = "Pixel ({x}, {y}): {regions} · {hemisphere} · voxel {voxel}"
ROI_AT_UNLABELLED = "no named region"
ROI_AT_NONE = "Pixel ({x}, {y}): off the cortex (no voxel)"
ROI_AT_OUTSIDE = "Pixel ({x}, {y}): outside the flatmap"
ROI_AT_HINT = "Click the map of activated voxels to name the region, hemisphere and voxel under the pointer."
ROI_LEGEND_TITLE = "Outlines"
ROI_LEGEND_BANDS = "eccentricity bands (black, when shown): "
ROI_PAPER_UNIONS = {
    "V1": "V1v + V1d", "V2": "V2v + V2d", "V3": "V3v + V3d", "hV4": "hV4",
    "faces": "OFA + FFA-1 + FFA-2 + mTL-faces + aTL-faces", "words": "OWFA + VWFA-1 + VWFA-2 + mfs-words + mTL-words",
    "places": "OPA + PPA + RSC", "bodies": "EBA + FBA-1 + FBA-2 + mTL-bodies",
}
ROI_PAINT_WEIGHT = "Weight of painted voxels"
ROI_VISUAL = "Early visual"
ROI_CATEGORY = "Category-selective"
ROI_ECCENTRICITY = "Eccentricity bands (deg)"
ROI_CLEAR = "Reset region weights"
ROI_VDVAE = "Stage-1 guess (VDVAE)"
ROI_FINAL = "ROI-optimal image"
ROI_PATTERN = "Activated voxels (red +, blue −; click to name a region)"
ROI_RECIPE = "Recipe (JSON)"
ROI_HISTORY = "This session's experiments (click one to restore its controls and recipe)"
ROI_LOAD = "Re-create from a recipe"
ROI_RUNNING = "Generating"
ROI_EMPTY = ("Nothing selected: paint some voxels on the flatmap or give a region a non-zero weight, "
             "then Generate.")
ROI_PAINT_AVERAGE = "Painting works on one subject's voxels; choose a subject, or use region weights for the average."
ROI_NO_FLATMAP = "painting unavailable ({reason}); the region sliders still work."
ROI_PAINT_OFF_CORTEX = "The painted strokes miss every voxel of this subject: paint inside the outlined visual cortex."
ROI_NO_MODELS = ("**The ROI studio needs a subject with regressors.** Build the demo with `braindiff demo build`, "
                 "or run `braindiff fit` for your subjects.")
ROI_COMMITTED = ("_Using the demo's committed ROI workspace (regressors stored at low rank); "
                 "`braindiff demo build` makes full ones in your workspace._")

# Brain response tab (ui/brain_response.py)
BR_TAB = "Brain response"
BR_INTRO = (
    "The closed loop: an **encoding model** predicts every voxel's response to an image (ridge from its CLIP-vision "
    "and VDVAE features, fitted on the subject's training images); the predicted pattern is then **decoded back** "
    "through the subject's regressors and both stages. Click a voxel on the predicted flatmap to see what it is tuned "
    "to; move the dial to push the image towards or away from a region."
)
BR_TEST_IMAGE = "Test image (index, from 0)"
BR_UPLOAD = "…or upload any image"
BR_RUN = "Predict and decode"
BR_INPUT = "Input image"
BR_PREDICTED = "Predicted response (red above the mean, blue below; click a voxel)"
BR_TRUE = "The simulator's true response (demo)"
BR_MEASURED = "Measured response (test betas, 3 repetitions averaged)"
BR_NO_REFERENCE = "no measured or true response for an uploaded image"
BR_BARS = "Mean predicted response per region (z)"
BR_VDVAE = "Decoded: stage-1 guess (VDVAE)"
BR_FINAL = "Decoded: final image"
BR_RUNNING = "Predicting and decoding"
BR_NO_MODELS = ("**This tab needs a subject with an encoder and regressors.** Fit one with `braindiff fit-encoder "
                "--subject S` after `braindiff fit` (the demo's are committed).")
BR_NO_TEST_IMAGES = "no test images found for subject {subject} (its bundle is missing); upload an image instead."
BR_NO_IMAGE = "Choose a test image or upload an image first."
BR_NO_REGION = "no named region"
BR_BAD_TEST_INDEX = "test image: expected an index in 0..{last}, got {got}."
BR_BARS_AXIS = "mean z"
BR_TOO_LARGE = ("{name}: too large to decode here (more than {limit:,} pixels, read from its header); upload a "
                "smaller copy.")
BR_BAD_UPLOAD = "{name}: not an image file that can be read (PNG, JPEG, ...); choose an image."
BR_SUMMARY = ("Subject {subject}: encoder accuracy over the test images, median r = {median:.2f} across voxels"
              "{true}.{reference}")
BR_SUMMARY_TRUE = " (against the simulator's noiseless truth: {median:.2f})"
BR_SUMMARY_REF = " This image: r(predicted, {what}) = {r:.2f} across voxels."
BR_TUNING = "Voxel tuning"
BR_TUNING_HINT = "_Click a voxel on the predicted flatmap._"
BR_OFF_CORTEX = "That pixel is off the cortex (no voxel of subject {subject} there): click inside the coloured area."
BR_TUNING_TEXT = ("**Voxel {voxel}** ({regions}) · encoding accuracy r = {accuracy:.2f} on the test images{true}. "
                  "Preferred caption words: {words}.")
BR_TUNING_TRUE = ", {r:.2f} against the true response"
BR_WORDS_NONE = "none stand out"
BR_WORDS_NOTE = ("_Words are those over-represented in the captions of the 10 test images the encoder predicts "
                 "activate the voxel most; the encoder has no CLIP-text input, so words come from the captions, "
                 "not the CLIP-text space._")
BR_TOP_MEASURED = "Top test images by measured response"
BR_TOP_PREDICTED = "Top test images by predicted response"
BR_STEER = "Enhance / suppress"
BR_REGION = "Region"
BR_DIAL = "Dial: away from the region (−1) … towards it (+1)"
BR_STEER_RUN = "Regenerate"
BR_STEERED = "Regenerated from the image"
BR_STEER_PLOT = "Encoder's predicted activation of the region (mean z) against the dial"
BR_STEER_NOTE = ("_The image's CLIP features (predicted from its predicted response) move along the region's "
                 "direction; stage 2 starts from the image's own VDVAE latents. The image shown is your dial's; "
                 "the curve is drawn from images made at −1, −0.5, 0, +0.5, +1 and yours. Its activation is the "
                 "encoder's predicted mean response of the region's voxels (z-scored: 0 is their average response "
                 "to the training images)._")

# ROI studio, best-of-N (issue 18)
ROI_CANDIDATES = "Candidates (best-of-N, ranked by the encoder)"
ROI_RANKED = "{caption} · rank {rank} ({score:+.2f})"
ROI_RANK_NOTE = ("_With several candidates, each history caption ends \"rank k (score)\": the subject's encoder "
                 "predicts the chosen regions' response to that image (their weighted mean, z-scored: 0 is the "
                 "voxels' average response to the training images), highest first. A negative best score means "
                 "even the best candidate is predicted to drive the regions below their average: the decoder did "
                 "not find an image that does._")
