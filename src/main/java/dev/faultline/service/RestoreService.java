package dev.faultline.service;

import dev.faultline.snapshot.Restore;
import dev.faultline.snapshot.RestoreReport;
import dev.faultline.snapshot.SnapshotException;
import dev.faultline.telemetry.EventLog;
import dev.faultline.telemetry.PagingMetrics;
import dev.faultline.vmm.Backends;
import java.io.BufferedInputStream;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.net.StandardProtocolFamily;
import java.net.UnixDomainSocketAddress;
import java.nio.channels.Channels;
import java.nio.channels.ClosedChannelException;
import java.nio.channels.ServerSocketChannel;
import java.nio.channels.SocketChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.LinkOption;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.locks.ReentrantLock;
import java.util.function.Consumer;

/**
 * A VMM process kept waiting for snapshots to restore, as a VMM process started ahead of a snapshot
 * load is: it resolves its backend, warms up ({@link WarmUp}), then listens on a Unix socket. Each
 * connection sends requests, one JSON object per line ({@link ServiceRequest}), and gets one JSON
 * object per line back, after the restored guest has ended: the report {@code restore --json} prints
 * ({@link RestoreReport}) with a {@code service} object that times the request (arrival to first
 * guest instruction, time queued), or {@code {"ok": false, "error_kind": ..., "error": ...}}. Restores
 * run one at a time, in arrival order: on two CPUs, two at once would only time each other. Between
 * restores it keeps its backend open and a VM built for the last restore's RAM size ({@link ReadyVm}).
 * The socket file exists exactly while the service listens (it is linked into place once listening).
 */
public final class RestoreService implements AutoCloseable {
    /**
     * @param socket         the Unix socket's path (a stale socket there is replaced; a live one or another kind of file refused)
     * @param backend        "kvm", "ref" or "auto" (resolved once, at start)
     * @param warmUpRestores restores of the warm-up snapshot before listening (0: none)
     * @param maxRestores    end after this many restore requests (0: never)
     * @param vmAheadRamBytes build a VM of this RAM size before listening, for the first restore of that size (0: none)
     * @param log            one line per event: warm-up progress, listening, each request served
     */
    public record Config(Path socket, String backend, int warmUpRestores, long maxRestores, long vmAheadRamBytes, Consumer<String> log,
                         EventLog events, PagingMetrics metrics) {
        public Config {
            if (events == null) events = EventLog.NONE;
            if (metrics == null) metrics = new PagingMetrics();
        }

        public Config(Path socket, String backend, int warmUpRestores, long maxRestores, long vmAheadRamBytes, Consumer<String> log) {
            this(socket, backend, warmUpRestores, maxRestores, vmAheadRamBytes, log, null, null);
        }

        public Config(Path socket, String backend, int warmUpRestores, long maxRestores, Consumer<String> log) {
            this(socket, backend, warmUpRestores, maxRestores, 0, log);
        }
    }

    /** Longest Unix socket path (sun_path is 108 bytes with its terminating NUL). */
    static final int MAX_SOCKET_PATH = 107;

    /** Longest request line accepted. */
    static final int MAX_LINE = 64 << 10;

    private final Config config;
    private final String backend;
    private final long startedAt = System.nanoTime();
    private final ReentrantLock restoring = new ReentrantLock(true);
    private final AtomicLong restoresServed = new AtomicLong(), requests = new AtomicLong();
    private final Set<SocketChannel> connections = ConcurrentHashMap.newKeySet();
    private final CountDownLatch ended = new CountDownLatch(1);
    private final ReadyVm readyVm;
    private WarmUp warmUp;
    private ServerSocketChannel server;
    private final AtomicBoolean stopped = new AtomicBoolean();
    private volatile boolean closed, stopRequested;

    private final ServiceTelemetry telemetry;

    private RestoreService(Config config, String backend) {
        this.config = config;
        this.telemetry = new ServiceTelemetry(config.events(), config.metrics());
        this.backend = backend;
        this.readyVm = new ReadyVm(backend, config.log());
    }

    /**
     * Resolves the backend, checks the socket path, warms up (through the same request path a client's
     * request takes), then listens.
     * @throws IllegalArgumentException for an unusable backend or socket path (a message naming it)
     * @throws IllegalStateException when the warm-up's restores fail
     */
    public static RestoreService start(Config c) {
        if (c.warmUpRestores() < 0) throw new IllegalArgumentException("the warm-up takes 0 or more restores, not " + c.warmUpRestores());
        String backend = c.backend().equals("auto") ? Backends.best().name() : c.backend();
        claim(c.socket());
        RestoreService s = new RestoreService(c, backend);
        try {
            s.warmUp = WarmUp.run(backend, c.warmUpRestores(), line -> s.handle(line, System.nanoTime(), false), c.log());
            if (c.vmAheadRamBytes() > 0) s.readyVm.prepare(c.vmAheadRamBytes());
            claim(c.socket()); // again: another service may have started meanwhile
            s.server = listen(c.socket());
        } catch (RuntimeException | Error e) {
            s.readyVm.close();
            throw e;
        }
        Thread.ofPlatform().name("restore-service-accept").daemon().start(s::acceptLoop);
        WarmUp w = s.warmUp;
        c.log().accept(String.format("listening on %s (backend %s; warm-up: %d %s restores in %.1f s, the last one's first instruction after %.1f ms%s)",
                c.socket(), backend, w.restores(), w.mode(), w.nanos() / 1e9, w.lastFirstInstructionMillis(),
                s.readyVm.readyRamBytes() == 0 ? "" : "; a VM for " + s.readyVm.readyRamBytes() + " bytes of RAM ready"));
        return s;
    }

    public String backend() { return backend; }
    public WarmUp warmUp() { return warmUp; }
    public Path socket() { return config.socket(); }
    public long restoresServed() { return restoresServed.get(); }

    /** Blocks until the service has ended ({@link #close}, or its last allowed restore served). */
    public void awaitEnd() throws InterruptedException {
        ended.await();
    }

    /**
     * Makes {@code socket} free to bind: nothing there, or a stale socket (no one accepts) that is
     * removed.
     */
    private static void claim(Path socket) {
        int length = socket.toString().getBytes(StandardCharsets.UTF_8).length;
        if (length > MAX_SOCKET_PATH) {
            throw new IllegalArgumentException("the socket path " + socket + " is " + length + " bytes long; a Unix socket's path holds at most "
                    + MAX_SOCKET_PATH + " (sun_path); choose a shorter one");
        }
        Path parent = socket.toAbsolutePath().getParent();
        if (parent != null && !Files.isDirectory(parent)) throw new IllegalArgumentException("the socket's directory " + parent + " does not exist");
        if (!Files.exists(socket, LinkOption.NOFOLLOW_LINKS)) return;
        if (!isSocket(socket)) throw new IllegalArgumentException(socket + " exists and is not a socket; name a new path for the service's socket");
        try {
            SocketChannel.open(UnixDomainSocketAddress.of(socket)).close();
            throw new IllegalArgumentException("a service already listens on " + socket);
        } catch (IOException stale) {
            try {
                Files.deleteIfExists(socket);
            } catch (IOException e) {
                throw new IllegalArgumentException("cannot remove the stale socket " + socket + ": " + e.getMessage(), e);
            }
        }
    }

    /**
     * Listens on {@code socket} such that the path exists only once connections are taken: bind(2)
     * makes the file before listen(2) is called, and a client that connects in between is refused
     * (measured here: 1 in 2000 tries of a client that connects as soon as the file appears). So the
     * socket is bound under a name of this process's own in the same directory, then linked to
     * {@code socket} (which fails, rather than replace it, if another service took it meanwhile).
     */
    private static ServerSocketChannel listen(Path socket) {
        Path dir = socket.toAbsolutePath().getParent();
        Path temporary = dir.resolve(".faultline-serve-" + ProcessHandle.current().pid() + "-" + TEMPORARY.incrementAndGet() + ".sock");
        if (temporary.toString().getBytes(StandardCharsets.UTF_8).length > MAX_SOCKET_PATH) {
            throw new IllegalArgumentException("the socket's directory " + dir + " is too long a path: the service binds " + temporary
                    + " first, and a Unix socket's path holds at most " + MAX_SOCKET_PATH + " bytes");
        }
        ServerSocketChannel ch = null;
        try {
            ch = ServerSocketChannel.open(StandardProtocolFamily.UNIX);
            ch.bind(UnixDomainSocketAddress.of(temporary));
            Files.createLink(socket, temporary);
            return ch;
        } catch (java.nio.file.FileAlreadyExistsException e) {
            close(ch);
            throw new IllegalArgumentException("another service took " + socket + " while this one warmed up", e);
        } catch (IOException e) {
            close(ch);
            throw new IllegalArgumentException("cannot listen on " + socket + ": " + e.getMessage(), e);
        } finally {
            try {
                Files.deleteIfExists(temporary);
            } catch (IOException ignored) {
                // a leftover temporary name in the directory is harmless
            }
        }
    }

    private static final AtomicLong TEMPORARY = new AtomicLong();

    private static void close(ServerSocketChannel ch) {
        if (ch == null) return;
        try {
            ch.close();
        } catch (IOException ignored) {
            // it never listened under the name clients use
        }
    }

    private static boolean isSocket(Path p) {
        try {
            int mode = (Integer) Files.getAttribute(p, "unix:mode", LinkOption.NOFOLLOW_LINKS);
            return (mode & 0170000) == 0140000;
        } catch (IOException | UnsupportedOperationException e) {
            return false;
        }
    }

    private void acceptLoop() {
        long n = 0;
        while (!closed) {
            SocketChannel c;
            try {
                c = server.accept();
            } catch (ClosedChannelException e) {
                return;
            } catch (IOException e) {
                if (!closed) config.log().accept("accept failed: " + e.getMessage());
                return;
            }
            connections.add(c);
            Thread.ofPlatform().name("restore-service-connection-" + ++n).daemon().start(() -> serve(c));
        }
    }

    /** One connection: requests in, replies out, until the client closes it or the service ends. */
    private void serve(SocketChannel c) {
        try (c; InputStream in = new BufferedInputStream(Channels.newInputStream(c)); OutputStream out = Channels.newOutputStream(c)) {
            while (!closed) {
                String line;
                try {
                    line = readLine(in, MAX_LINE);
                } catch (ServiceRequest.BadRequestException e) {
                    reply(out, error("bad-request", e.getMessage()));
                    return; // the rest of that line cannot be told from a next request
                }
                if (line == null) return;
                if (line.isBlank()) continue;
                long arrival = System.nanoTime();
                Map<String, Object> answer = handle(line, arrival, true);
                reply(out, answer);
                if (stopRequested || (config.maxRestores() > 0 && restoresServed.get() >= config.maxRestores())) close();
            }
        } catch (IOException e) {
            if (!closed) config.log().accept("a connection ended: " + e.getMessage());
        } finally {
            connections.remove(c);
        }
    }

    private static void reply(OutputStream out, Map<String, Object> answer) throws IOException {
        out.write((ServiceJson.line(answer) + "\n").getBytes(StandardCharsets.UTF_8));
        out.flush();
    }

    /** Reads one line (without its \n) of at most {@code max} bytes; null at the end of the stream. */
    static String readLine(InputStream in, int max) throws IOException {
        ByteArrayOutputStream b = new ByteArrayOutputStream(256);
        int ch;
        while ((ch = in.read()) != -1) {
            if (ch == '\n') return b.toString(StandardCharsets.UTF_8);
            if (b.size() == max) throw new ServiceRequest.BadRequestException("a line is longer than " + max + " bytes");
            b.write(ch);
        }
        return b.size() == 0 ? null : b.toString(StandardCharsets.UTF_8);
    }

    /**
     * Serves one request line that arrived at {@code arrivalNanos} ({@link System#nanoTime}) and
     * returns the reply; never throws for what a request asks. The warm-up's own requests are
     * neither counted nor logged ({@code client} false).
     */
    Map<String, Object> handle(String line, long arrivalNanos, boolean client) {
        if (client) requests.incrementAndGet();
        ServiceRequest req;
        try {
            req = ServiceRequest.parse(line, backend);
        } catch (ServiceRequest.BadRequestException e) {
            return error("bad-request", e.getMessage());
        }
        if (req.op() == ServiceRequest.Op.STATUS) return status();
        if (req.op() == ServiceRequest.Op.STOP) {
            if (client) config.log().accept("stopping: asked by a client");
            stopRequested = true;
            Map<String, Object> m = new LinkedHashMap<>();
            m.put("ok", true);
            m.put("op", "stop");
            m.put("restores_served", restoresServed.get());
            return m;
        }
        restoring.lock();
        try {
            readyVm.takenSinceAsked(); // forget a take by a restore that was refused
            long start = System.nanoTime();
            Restore.Result r;
            ServiceTelemetry.Restoring watch = client ? telemetry.restoring(req.dir(), requests.get()) : ServiceTelemetry.Restoring.NONE;
            try {
                r = Restore.run(req.dir(), req.options().withBackends(readyVm::open).withShells(readyVm).withObserver(watch));
            } catch (SnapshotException e) {
                if (client) config.log().accept("refused " + req.dir() + ": " + e.getMessage());
                watch.failed("refused", e.getMessage());
                return error("refused", e.getMessage());
            } catch (IllegalArgumentException e) {
                watch.failed("bad-request", e.getMessage());
                return error("bad-request", e.getMessage());
            } catch (RuntimeException e) {
                if (client) config.log().accept("restore of " + req.dir() + " failed: " + e);
                watch.failed("failed", e.getMessage() == null ? e.toString() : e.getMessage());
                return error("failed", e.getMessage() == null ? e.toString() : e.getMessage());
            }
            watch.ended(r);
            boolean vmAhead = readyVm.takenSinceAsked();
            long served = client ? restoresServed.incrementAndGet() : restoresServed.get();
            readyVm.prepare(r.snapshot().ramBytes()); // for the next restore of this size; before the answer, so a client sees a settled process
            Map<String, Object> tree = RestoreReport.of(req.dir(), r, req.prefetch());
            double firstMs = (start - arrivalNanos + r.timings().firstEntry()) / 1e6;
            Map<String, Object> svc = new LinkedHashMap<>();
            svc.put("request_to_first_instruction_ms", round(firstMs));
            svc.put("queued_ms", round((start - arrivalNanos) / 1e6));
            svc.put("request_to_end_ms", round((System.nanoTime() - arrivalNanos) / 1e6));
            svc.put("vm_built_ahead", vmAhead);
            svc.put("restores_served", served);
            svc.put("warm_up_restores", warmUp == null ? 0 : warmUp.restores());
            tree.put("service", svc);
            if (client) config.log().accept(String.format("restore %d: %s %s on %s: first instruction %.3f ms after the request, %s, ended after %.0f ms",
                    served, req.dir(), r.mode().label(), r.backend(), firstMs, r.ok() ? "ok" : "FAILED: " + r.comparison().verdict(),
                    (System.nanoTime() - arrivalNanos) / 1e6));
            return tree;
        } finally {
            restoring.unlock();
        }
    }

    private Map<String, Object> status() {
        Map<String, Object> m = new LinkedHashMap<>();
        m.put("ok", true);
        m.put("op", "status");
        m.put("backend", backend);
        m.put("uptime_ms", (System.nanoTime() - startedAt) / 1_000_000);
        m.put("requests", requests.get());
        m.put("restores_served", restoresServed.get());
        m.put("restoring", restoring.isLocked());
        m.put("vm_ready_for_ram_bytes", readyVm.readyRamBytes());
        Map<String, Object> w = new LinkedHashMap<>();
        w.put("restores", warmUp.restores());
        w.put("mode", warmUp.mode());
        if (warmUp.lazyUnavailable() != null) w.put("lazy_unavailable", warmUp.lazyUnavailable());
        w.put("seconds", round(warmUp.nanos() / 1e9));
        m.put("warm_up", w);
        return m;
    }

    private static Map<String, Object> error(String kind, String message) {
        Map<String, Object> m = new LinkedHashMap<>();
        m.put("ok", false);
        m.put("error_kind", kind);
        m.put("error", message);
        return m;
    }

    private static double round(double v) {
        return Math.round(v * 1000) / 1000.0;
    }

    /**
     * Stops listening and removes the socket file, at once: what a signal's shutdown hook does (the
     * process is ending; a guest under way ends with it). Any thread, any number of times.
     */
    public void stopListening() {
        if (!stopped.compareAndSet(false, true)) return;
        closed = true;
        try {
            if (server != null) server.close();
        } catch (IOException ignored) {
            // closing a listening socket does not fail in a way worth reporting
        }
        try {
            Files.deleteIfExists(config.socket());
        } catch (IOException e) {
            config.log().accept("cannot remove " + config.socket() + ": " + e.getMessage());
        }
        for (SocketChannel c : connections) {
            try {
                c.shutdownInput(); // its thread reads no further request; a restore under way is still answered
            } catch (IOException ignored) {
                // the peer may have gone already
            }
        }
    }

    /**
     * {@link #stopListening}, then waits for a restore under way to end and be answered, closes the
     * backend and the VM built ahead, and ends {@link #awaitEnd}. Any thread, any number of times.
     */
    @Override
    public void close() {
        stopListening();
        restoring.lock();
        try {
            readyVm.close();
        } finally {
            restoring.unlock();
        }
        ended.countDown();
    }
}
