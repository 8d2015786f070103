"""The book's machinery: the chapter registry, verdict files, the scorecard, the replication, and the integrity
and staleness of committed tables; chapters use it as ``mot.book.<name>``."""
from .registry import (BEYOND, CHAPTER_MODULES, CHAPTERS, NOTEBOOKS, QUICK_SEEDS, READERS, REPO, RUNNING,  # noqa: F401
                       ChapterParams,
                       beyond_chapters, chapter_params, chapter_title, claim_chapters, load_chapters, out_dir,
                       params_for, register, verdict_chapters, verdict_label, writable_folder)
from .verdicts import (BADGES, VERDICT_EXTRA, VERDICT_KEYS, badge, read_verdicts, show_verdicts,  # noqa: F401
                       verdict_markdown, verdict_table, write_verdicts)
from .replication import (CLAIM_ENGINE, REPLICATION, agreement_report, claim_fingerprint, compare_verdicts,  # noqa: F401
                          load_replication, replication_sets, replication_stale, restamp_replication,
                          same_everywhere, save_replication)
from . import claim_registry  # noqa: F401
from .claim_registry import KINDS, STATEMENTS, headlines, registry_hash, registry_json  # noqa: F401
from .scorecard import (ScorecardParams, beyond_markdown, fair_answer_markdown, headlines_markdown,  # noqa: F401
                        history_markdown, scorecard_markdown, seed_dependent_markdown, statement_trends_markdown,
                        trends_markdown)
from .staleness import library_hash  # noqa: F401
