package dev.faultline.paging;

import java.util.Locale;

/**
 * What the core installs besides the faulting page.
 * <ul>
 *   <li>{@link None}: exactly the faulting page.</li>
 *   <li>{@link Readahead}: on a fault at page p, also p+1.. while missing, in one install call; the
 *       window starts at {@code initialPages} and doubles while a vCPU's faults stay sequential, up to
 *       {@code maxPages}. With {@code aheadPages} &gt; 0 the lane then keeps installing ahead of the
 *       vCPU in the background (up to that many pages past the last fault) while no fault is pending,
 *       so a sequential reader mostly finds its pages already there.</li>
 *   <li>{@link Replay}: pages in the order a previous run first touched them ({@link WorkingSet}),
 *       installed in the background; faults still go first.</li>
 * </ul>
 */
public sealed interface Prefetch {
    /** Largest run one install call may cover, in pages (sizes staging buffers). */
    int maxRunPages();

    record None() implements Prefetch {
        public int maxRunPages() { return 1; }
    }

    record Readahead(int initialPages, int maxPages, int aheadPages) implements Prefetch {
        public Readahead {
            if (initialPages < 1 || maxPages < initialPages || aheadPages < 0) {
                throw new IllegalArgumentException("readahead needs 1 <= initial <= max and ahead >= 0, got " + initialPages
                        + ", " + maxPages + ", " + aheadPages);
            }
        }
        public int maxRunPages() { return maxPages; }
    }

    record Replay(WorkingSet order, int batchPages) implements Prefetch {
        public int maxRunPages() { return batchPages; }
    }

    /** Pages per install when a working set is replayed (runs of it are installed up to 1 MiB at a time). */
    int REPLAY_BATCH_PAGES = 256;

    /**
     * A prefetch by its command-line name: "none", "readahead" ({@link #DEFAULT_READAHEAD}) or
     * "replay:FILE" (the working set in FILE, read with {@link WorkingSet#read}'s checks).
     * @throws IllegalArgumentException naming the accepted words
     * @throws PageSourceException for a working-set file that cannot be used
     */
    static Prefetch parse(String spec) {
        if (spec.equals("none")) return NONE;
        if (spec.equals("readahead")) return DEFAULT_READAHEAD;
        if (spec.startsWith("replay:") && spec.length() > "replay:".length()) {
            return new Replay(WorkingSet.read(java.nio.file.Path.of(spec.substring("replay:".length()))), REPLAY_BATCH_PAGES);
        }
        throw new IllegalArgumentException("none, readahead or replay:FILE (a working set recorded with --record-working-set), not '" + spec + "'");
    }

    Prefetch NONE = new None();
    /** The default: 16 pages doubling to 256 (1 MiB per install), 32 MiB installed ahead of a sequential vCPU. */
    Readahead DEFAULT_READAHEAD = new Readahead(16, 256, 8192);

    static String name(Prefetch p) {
        return switch (p) {
            case None n -> "none";
            case Readahead r -> "readahead";
            case Replay r -> "replay";
        };
    }

    static String describe(Prefetch p) {
        return switch (p) {
            case None n -> "none";
            case Readahead r -> String.format(Locale.ROOT, "readahead %d..%d pages per fault, %d pages ahead", r.initialPages(),
                    r.maxPages(), r.aheadPages());
            case Replay r -> "replay of " + r.order().size() + " pages, " + r.batchPages() + " per install";
        };
    }
}
