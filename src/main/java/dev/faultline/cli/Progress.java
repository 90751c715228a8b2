package dev.faultline.cli;

import dev.faultline.migration.MigrationSource;
import java.io.PrintStream;

/**
 * Progress of a migration: a bar redrawn in place on a terminal, plain lines (phases, and the transfer
 * every quarter) when stdout is a log or a pipe, nothing with --json (stdout is the JSON object).
 */
final class Progress implements MigrationSource.Listener {
    private final PrintStream out = System.out;
    private final boolean quiet;
    private final boolean terminal;
    private final long t0 = System.nanoTime();
    private int lastQuarter = -1;
    private boolean barShown;

    Progress(boolean quiet) {
        this.quiet = quiet;
        java.io.Console c = System.console();
        this.terminal = c != null && c.isTerminal() && System.getenv("TERM") != null && !"dumb".equals(System.getenv("TERM"));
    }

    private String stamp() {
        return String.format("[%6.2f s] ", (System.nanoTime() - t0) / 1e9);
    }

    @Override
    public synchronized void phase(String text) {
        if (quiet) return;
        if (barShown) out.print("\r\033[K");
        barShown = false;
        out.println(stamp() + text);
        out.flush();
    }

    @Override
    public synchronized void transfer(long sent, long total, long requested) {
        if (quiet || total == 0) return;
        double f = (double) sent / total;
        if (terminal) {
            int width = 30, full = (int) Math.round(f * width);
            out.print("\r\033[K" + stamp() + "[" + "#".repeat(full) + "-".repeat(width - full) + "] "
                    + String.format("%5.1f%%  %d/%d pages, %d demanded", f * 100, sent, total, requested));
            out.flush();
            barShown = true;
        } else {
            int q = (int) (f * 4);
            if (q != lastQuarter) {
                lastQuarter = q;
                out.println(stamp() + String.format("transfer %3.0f%%: %d of %d pages at the destination, %d demanded by faults", f * 100, sent, total, requested));
            }
        }
    }

    synchronized void done() {
        if (barShown) out.println();
        barShown = false;
    }
}
