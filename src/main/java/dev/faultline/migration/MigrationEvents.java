package dev.faultline.migration;

import jdk.jfr.Category;
import jdk.jfr.DataAmount;
import jdk.jfr.Description;
import jdk.jfr.Event;
import jdk.jfr.Label;
import jdk.jfr.Name;
import jdk.jfr.StackTrace;
import jdk.jfr.Timespan;

/**
 * JFR events of a migration, so that {@code jfr print --categories faultline} or Mission Control shows
 * it as it happened. Events that no recording enables cost a field check: callers test
 * {@code isEnabled()} / {@code shouldCommit()} before filling one in.
 */
public final class MigrationEvents {
    private MigrationEvents() {}

    @Name("dev.faultline.MigrationPhase")
    @Label("Migration phase")
    @Category({"faultline", "Migration"})
    @Description("One phase of a migration on this side: handshake, pre-copy round, switch-over, post-copy, verification")
    @StackTrace(false)
    public static final class Phase extends Event {
        @Label("Side") public String side;
        @Label("Phase") public String phase;
        @Label("Pages") public long pages;
        @Label("Bytes") @DataAmount public long bytes;
    }

    @Name("dev.faultline.RemotePageFetch")
    @Label("Remote page fetch")
    @Category({"faultline", "Migration"})
    @Description("A destination fault served from the source over the urgent connection (request to installed-ready data)")
    @StackTrace(false)
    public static final class RemoteFetch extends Event {
        @Label("Guest-physical address") public long gpa;
        @Label("Pages") public int pages;
        @Label("Request id") public long requestId;
        @Label("Connection") public int lane;
    }

    @Name("dev.faultline.PushedPagesInstalled")
    @Label("Pushed pages installed")
    @Category({"faultline", "Migration"})
    @Description("A batch of pages the source pushed in the background, installed on the destination unless a fault got them first")
    @StackTrace(false)
    public static final class PushInstall extends Event {
        @Label("Guest-physical address") public long gpa;
        @Label("Pages offered") public int pages;
        @Label("Pages installed") public int installed;
    }

    @Name("dev.faultline.UrgentRequestServed")
    @Label("Urgent request served")
    @Category({"faultline", "Migration"})
    @Description("The source answered a destination's page request on an urgent connection")
    @StackTrace(false)
    public static final class Served extends Event {
        @Label("Guest-physical address") public long gpa;
        @Label("Pages") public int pages;
        @Label("Request id") public long requestId;
        @Label("Service time") @Timespan(Timespan.NANOSECONDS) public long nanos;
    }

    /**
     * Loads and registers every event class of a migration (and the CPU-time bean the figures use),
     * so that their first use in the switch-over or on the fault path does not pay class loading and
     * JFR registration (about 100 ms in a cold JVM). Called during the handshake, on both sides.
     */
    static void warmUp() {
        for (Event e : new Event[] {new Phase(), new RemoteFetch(), new PushInstall(), new Served()}) {
            e.begin();
            e.end();
            e.shouldCommit(); // never committed: a recording shows only real events
        }
        java.lang.management.ManagementFactory.getThreadMXBean().getCurrentThreadCpuTime();
    }
}
