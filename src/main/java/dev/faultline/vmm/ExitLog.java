package dev.faultline.vmm;

import dev.faultline.hv.ExitRecord;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;

/**
 * The exits of one vCPU in order, with how each memory fault was resolved. Bounded: past
 * {@code limit} entries it only counts, so a long run cannot exhaust memory. Single-writer.
 */
public final class ExitLog {
    public record Entry(ExitRecord exit, String resolution) {}

    private final int limit;
    private final List<Entry> entries = new ArrayList<>();
    private long dropped;

    public ExitLog(int limit) {
        this.limit = limit;
    }

    public boolean wantsMore() {
        return entries.size() < limit;
    }

    public void add(ExitRecord exit, String resolution) {
        if (entries.size() < limit) entries.add(new Entry(exit, resolution));
        else dropped++;
    }

    public List<Entry> entries() { return Collections.unmodifiableList(entries); }

    /** Exits not kept because the log was full. */
    public long dropped() { return dropped; }
}
