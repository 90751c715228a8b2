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
    private final RequestBody[] bodies;
    private final long replySpinNanos;
    private final long ramSize;
    private final PageLog log;
    private final LatencySamples samples;
    private final AtomicLong nextId = new AtomicLong();
    private final ThreadLocal<Integer> laneOfThread = new ThreadLocal<>();
    private int lanesTaken;

    /** What a lane waits for, worded only if the wait fails (no string is built per fault). */
    private static final class ReplyWait {
        long id, gpa;
        int count;

        @Override
        public String toString() {
            return String.format("the reply to request %d (pages [0x%x, +%d))", id, gpa, count);
        }
    }

    /** Where accepted pages are recorded (their CRC32C for the transfer digest). */
    public interface PageLog {
        /**
         * @param payload a buffer holding the page at absolute {@code offset} (null for a zero page), valid
         *     during the call only
         */
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
        this.bodies = new RequestBody[urgent.size()];
        for (int i = 0; i < bodies.length; i++) bodies[i] = new RequestBody();
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

    /**
     * One request and its reply, making nothing on the way (the request is written by the lane's
     * {@link RequestBody}, the reply read in place in the connection's buffer); only a failure words
     * a message.
     */
    private void exchange(int lane, Connection c, long id, long gpa, int count, MemorySegment dst, long dstOffset, boolean real) {
        MigrationEvents.RemoteFetch ev = new MigrationEvents.RemoteFetch();
        ev.begin();
        try {
            // A shared connection (more threads than connections) carries one request at a time.
            synchronized (c) {
                RequestBody body = bodies[lane];
                body.id = id;
                body.gpa = gpa;
                body.count = count;
                c.send(Protocol.REQUEST, body);
                ReplyWait wait = waits[lane];
                wait.id = id;
                wait.gpa = gpa;
                wait.count = count;
                int len = c.receiveInPlace(wait, replySpinNanos);
                if (c.lastType() == Protocol.ERROR) {
                    Frame f = c.lastFrame();
                    throw new ProtocolException(c.peer() + " reported an error instead of answering request " + id + ": "
                            + Messages.string(f, c.peer(), Protocol.ERROR));
                }
                Messages.checkPagesInPlace(c, len, ramSize);
                MemorySegment in = c.receivedSegment();
                long zeroMask = Messages.pagesZeroMask(in);
                if (Messages.pagesPurpose(in) != Protocol.PURPOSE_REPLY || Messages.pagesRequestId(in) != id || Messages.pagesGpa(in) != gpa
                        || Messages.pagesCount(in) != count) {
                    throw new ProtocolException(String.format("%s: message %s #%d answers request %d [0x%x, +%d) (%s) where request %d [0x%x, +%d) was due; nothing of it was installed",
                            c.peer(), Protocol.typeName(c.lastType()), c.lastSeq(), Messages.pagesRequestId(in), Messages.pagesGpa(in), Messages.pagesCount(in),
                            Protocol.purposeName(Messages.pagesPurpose(in)), id, gpa, count));
                }
                long off = Protocol.HEADER_BYTES + Messages.PagesHeader.BYTES;
                for (int i = 0; i < count; i++) {
                    long d = dstOffset + (long) i * PAGE;
                    if ((zeroMask & (1L << i)) != 0) {
                        MemorySegment.copy(ZERO_PAGE, 0, dst, d, PAGE);
                        if (real) log.accepted(gpa + (long) i * PAGE, null, 0, true);
                    } else {
                        MemorySegment.copy(in, off, dst, d, Protocol.PAGE);
                        if (real) log.accepted(gpa + (long) i * PAGE, c.receivedBuffer(), (int) off, false);
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

    /** The payload of a REQUEST, reused by its lane: id, first page, page count. */
    private static final class RequestBody implements java.util.function.Consumer<ByteBuffer> {
        long id, gpa;
        int count;

        @Override
        public void accept(ByteBuffer b) {
            Messages.request(b, id, gpa, count);
        }
    }

    /** A page of zeros, copied over a zero page of a reply. */
    private static final MemorySegment ZERO_PAGE = java.lang.foreign.Arena.global().allocate(PAGE);

    public long requests() { return nextId.get(); }

    @Override
    public String describe() {
        return "migration source " + urgent.get(0).peer().substring("peer ".length()) + " (" + urgent.size() + " urgent connections)";
    }
}
