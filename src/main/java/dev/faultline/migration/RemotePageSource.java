package dev.faultline.migration;

import dev.faultline.paging.PageSource;
import dev.faultline.paging.PageSourceException;
import java.lang.foreign.MemorySegment;
import java.nio.ByteBuffer;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.atomic.AtomicLong;

/**
 * The migration source as a {@link PageSource} for the destination's fault core: a fault's pages are
 * requested on an urgent connection and read back on the same thread, so a fault never waits behind
 * the background push (which travels on the main connection) nor behind another lane's fault.
 *
 * <p>Threading: each serving thread (a userfaultfd handler) takes an urgent connection of its own on
 * its first fault and keeps it; with more threads than connections the extra ones share the last.
 * Requests carry ids and name their pages, so they are idempotent: asked again after a broken
 * connection, the source answers with the same frozen pages, and the fault core installs a page
 * only once whatever arrives twice.
 */
public final class RemotePageSource implements PageSource {
    private final List<Connection> urgent;
    private final ReplyWait[] waits;
    private final long replySpinNanos;
    private final long ramSize;
    private final PageLog log;
    private final LatencySamples samples;
    private final AtomicLong nextId = new AtomicLong();
    private final ThreadLocal<Integer> laneOfThread = new ThreadLocal<>();
    private int lanesTaken;

    /** Where accepted pages are recorded (their CRC32C for the transfer digest). */
    /** What a lane waits for, worded only if the wait fails (no string is built per fault). */
    private static final class ReplyWait {
        long id, gpa;
        int count;

        @Override
        public String toString() {
            return String.format("the reply to request %d (pages [0x%x, +%d))", id, gpa, count);
        }
    }

    public interface PageLog {
        /** @param payload the received payload holding the page at {@code offset} (null for a zero page) */
        void accepted(long gpa, ByteBuffer payload, int offset, boolean zero);
    }

    /**
     * @param replySpinNanos how long a serving thread polls for its reply before it sleeps
     *     ({@link Connection#receive(Object, long)}; 0: sleep at once)
     */
    public RemotePageSource(List<Connection> urgent, long ramSize, PageLog log, LatencySamples samples, long replySpinNanos) {
        if (urgent.isEmpty()) throw new IllegalArgumentException("a remote page source needs at least one urgent connection");
        if (replySpinNanos < 0) throw new IllegalArgumentException("reply spin must not be negative, got " + replySpinNanos);
        this.replySpinNanos = replySpinNanos;
        this.urgent = new ArrayList<>(urgent);
        this.waits = new ReplyWait[urgent.size()];
        for (int i = 0; i < waits.length; i++) waits[i] = new ReplyWait();
        this.ramSize = ramSize;
        this.log = log;
        this.samples = samples;
    }

    private int lane() {
        Integer l = laneOfThread.get();
        if (l == null) {
            synchronized (this) {
                l = Math.min(lanesTaken++, urgent.size() - 1);
            }
            laneOfThread.set(l);
        }
        return l;
    }

    /**
     * Exercises every urgent connection {@code rounds} times with warm-up requests (id 0, valid before
     * the switch-over: the source answers from its RAM as it is, through the code of a real reply, and
     * this side throws the pages away), so that the first real faults do not run cold code on either
     * side. The requests walk the low 1 MiB (boot tables and stacks: data and zero pages both).
     */
    public void warmUp(int rounds) {
        MemorySegment scratch = java.lang.foreign.Arena.ofAuto().allocate(PAGE);
        long span = Math.min(ramSize, dev.faultline.guest.BootProtocol.IMAGE_MIN_GPA) / PAGE;
        for (int lane = 0; lane < urgent.size(); lane++) {
            for (int i = 0; i < rounds; i++) exchange(lane, urgent.get(lane), 0, (i % span) * PAGE, 1, scratch, 0, false);
        }
    }

    @Override
    public void fill(long gpa, MemorySegment dst, long dstOffset, long len) {
        int lane = lane();
        Connection c = urgent.get(lane);
        int count = (int) (len / PAGE);
        long t0 = System.nanoTime();
        long id = nextId.incrementAndGet();
        exchange(lane, c, id, gpa, count, dst, dstOffset, true);
        long nanos = System.nanoTime() - t0;
        samples.record(t0, nanos, lane);
    }

    private void exchange(int lane, Connection c, long id, long gpa, int count, MemorySegment dst, long dstOffset, boolean real) {
        MigrationEvents.RemoteFetch ev = new MigrationEvents.RemoteFetch();
        ev.begin();
        try {
            // A shared connection (more threads than connections) carries one request at a time.
            synchronized (c) {
                c.send(Protocol.REQUEST, b -> Messages.request(b, new Messages.Request(id, gpa, count)));
                ReplyWait wait = waits[lane];
                wait.id = id;
                wait.gpa = gpa;
                wait.count = count;
                Frame f = c.receive(wait, replySpinNanos);
                if (f.type() == Protocol.ERROR) {
                    throw new ProtocolException(c.peer() + " reported an error instead of answering request " + id + ": "
                            + Messages.string(f, c.peer(), Protocol.ERROR));
                }
                Messages.PagesHeader h = Messages.pagesHeader(f, c.peer(), ramSize);
                if (h.purpose() != Protocol.PURPOSE_REPLY || h.requestId() != id || h.gpa() != gpa || h.count() != count) {
                    throw new ProtocolException(String.format("%s: message %s answers request %d [0x%x, +%d) (%s) where request %d [0x%x, +%d) was due; nothing of it was installed",
                            c.peer(), f.describe(), h.requestId(), h.gpa(), h.count(), Protocol.purposeName(h.purpose()), id, gpa, count));
                }
                ByteBuffer p = f.payload();
                MemorySegment data = MemorySegment.ofBuffer(p);
                int off = Messages.PagesHeader.BYTES;
                for (int i = 0; i < count; i++) {
                    long d = dstOffset + (long) i * PAGE;
                    if (h.isZero(i)) {
                        dst.asSlice(d, PAGE).fill((byte) 0);
                        if (real) log.accepted(gpa + (long) i * PAGE, null, 0, true);
                    } else {
                        MemorySegment.copy(data, off, dst, d, Protocol.PAGE);
                        if (real) log.accepted(gpa + (long) i * PAGE, p, off, false);
                        off += Protocol.PAGE;
                    }
                }
            }
        } catch (ProtocolException e) {
            throw new PageSourceException(e.getMessage(), e);
        }
        if (real && ev.shouldCommit()) {
            ev.gpa = gpa;
            ev.pages = count;
            ev.requestId = id;
            ev.lane = lane;
            ev.commit();
        }
    }

    public long requests() { return nextId.get(); }

    @Override
    public String describe() {
        return "migration source " + urgent.get(0).peer().substring("peer ".length()) + " (" + urgent.size() + " urgent connections)";
    }
}
