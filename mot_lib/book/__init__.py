"""The book's machinery: the chapter registry, verdict files, the scorecard, the replication, and the integrity
and staleness of committed tables; chapters use it as ``mot.book.<name>``."""
from .registry import (BEYOND, CHAPTER_MODULES, CHAPTERS, NOTEBOOKS, QUICK_SEEDS, REPO, RUNNING, ChapterParams,  # noqa: F401
                       beyond_chapters, chapter_params, chapter_title, claim_chapters, load_chapters, out_dir,
                       params_for, register, verdict_chapters, verdict_label, writable_folder)
from .verdicts import (BADGES, VERDICT_EXTRA, VERDICT_KEYS, badge, read_verdicts, show_verdicts,  # noqa: F401
                       verdict_markdown, verdict_table, write_verdicts)
from .replication import (CLAIM_ENGINE, REPLICATION, agreement_report, claim_fingerprint, compare_verdicts,  # noqa: F401
                          load_replication, replication_sets, replication_stale, restamp_replication,
                          same_everywhere, save_replication)
from .scorecard import ScorecardParams, beyond_markdown, scorecard_markdown  # noqa: F401
from .staleness import library_hash  # noqa: F401
