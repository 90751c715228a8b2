package dev.faultline.snapshot;

import com.fasterxml.jackson.core.JsonFactory;
import com.fasterxml.jackson.core.JsonParseException;
import com.fasterxml.jackson.core.JsonParser;
import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.core.JsonToken;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.SerializationFeature;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.JsonNodeFactory;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.faultline.guest.workload.WorkloadParams;
import dev.faultline.hv.DescriptorTable;
import dev.faultline.hv.Regs;
import dev.faultline.hv.Segment;
import dev.faultline.hv.Sregs;
import dev.faultline.vmm.VcpuState;
import java.io.IOException;
import java.util.ArrayList;
import java.util.List;

/**
 * {@link SnapshotDescription} to and from JSON. 64-bit values (registers, addresses) are written as
 * "0x" hex strings, since JSON numbers lose precision past 2^53 in most readers. Reading names the
 * JSON path of whatever is missing or malformed ("vcpus[1].sregs.cs.l").
 */
public final class DescriptionJson {
    private DescriptionJson() {}

    /** Writing only: an ObjectMapper costs about 40 ms to make in a cold JVM, on a restore's path (see {@link #readTree}). */
    private static final class Writer {
        static final ObjectMapper MAPPER = new ObjectMapper().enable(SerializationFeature.INDENT_OUTPUT);
    }
    private static final JsonNodeFactory NODES = JsonNodeFactory.instance;
    private static final JsonFactory PARSERS = new JsonFactory();
    static final String[] SEGMENTS = {"cs", "ds", "es", "fs", "gs", "ss", "tr", "ldt"};

    // ---- writing ------------------------------------------------------------------------------

    public static byte[] toBytes(SnapshotDescription d) {
        try {
            return Writer.MAPPER.writeValueAsBytes(toTree(d));
        } catch (JsonProcessingException e) {
            throw new IllegalStateException("cannot render the snapshot description: " + e.getMessage(), e);
        }
    }

    static ObjectNode toTree(SnapshotDescription d) {
        ObjectNode o = NODES.objectNode();
        o.put("format", SnapshotFormat.FORMAT);
        o.put("version", d.version());
        o.put("backend", d.backend());
        o.put("created", d.created());
        o.put("ram_bytes", d.ramBytes());
        o.put("page_bytes", SnapshotFormat.PAGE);
        o.put("chunk_bytes", SnapshotFormat.CHUNK_BYTES);
        ArrayNode slots = o.putArray("memslots");
        for (SnapshotDescription.Memslot m : d.memslots()) {
            ObjectNode s = slots.addObject();
            s.put("slot", m.slot());
            s.put("gpa", hex(m.gpa()));
            s.put("bytes", m.bytes());
            s.put("flags", m.flags());
        }
        ObjectNode p = o.putObject("point");
        p.put("kind", d.point().kind());
        if (d.point().kind().equals("time")) p.put("after_ms", d.point().afterMillis());
        else {
            p.put("vcpu", d.point().vcpu());
            p.put("exit", d.point().exit());
        }
        o.set("guest", guest(d.guest()));
        ArrayNode vcpus = o.putArray("vcpus");
        for (int i = 0; i < d.vcpus().size(); i++) {
            ObjectNode v = vcpus.addObject();
            v.put("index", i);
            v.put("guest_exits", d.guestExits().get(i));
            v.set("regs", regs(d.vcpus().get(i).regs()));
            v.set("sregs", sregs(d.vcpus().get(i).sregs()));
        }
        ObjectNode mem = o.putObject("memory");
        mem.put("file", d.memory().file());
        mem.put("bytes", d.memory().bytes());
        mem.put("stored_pages", d.memory().storedPages());
        mem.put("zero_pages", d.memory().zeroPages());
        mem.put("ram_sha256", d.memory().ramSha256());
        indexFile(o.putObject("page_map"), d.pageMap());
        indexFile(o.putObject("chunk_table"), d.chunkTable());
        if (d.originalRun() != null) {
            ObjectNode r = o.putObject("original_run");
            r.put("ram_sha256", d.originalRun().ramSha256());
            ArrayNode rv = r.putArray("vcpus");
            for (SnapshotDescription.VcpuEnd e : d.originalRun().vcpus()) {
                ObjectNode n = rv.addObject();
                n.put("index", e.index());
                n.put("outcome", e.outcome());
                n.put("done_code", e.doneCode());
                ArrayNode reps = n.putArray("reports");
                for (long x : e.reports()) reps.add(hex(x));
            }
        }
        return o;
    }

    private static void indexFile(ObjectNode o, SnapshotDescription.IndexFile f) {
        o.put("file", f.file());
        o.put("bytes", f.bytes());
        o.put("sha256", f.sha256());
    }

    private static ObjectNode guest(SnapshotDescription.Guest g) {
        ObjectNode o = NODES.objectNode();
        if (g.isWorkload()) {
            o.put("workload", g.workload());
            WorkloadParams p = g.params();
            ObjectNode params = o.putObject("params");
            params.put("mem_bytes", p.memSize());
            params.put("vcpus", p.vcpus());
            params.put("seed", p.seed());
            params.put("stride", p.stride());
            params.put("rounds", p.rounds());
            params.put("working_set_pages", p.workingSetPages());
            params.put("phases", p.phases());
        } else {
            o.put("image", g.image());
            o.put("image_sha256", g.imageSha256());
            o.put("load_gpa", hex(g.loadGpa()));
            o.put("entry", hex(g.entry()));
        }
        return o;
    }

    static ObjectNode regs(Regs r) {
        ObjectNode o = NODES.objectNode();
        for (String n : Regs.REPORT_ORDER) o.put(n, hex(r.byName(n)));
        return o;
    }

    static ObjectNode sregs(Sregs s) {
        ObjectNode o = NODES.objectNode();
        Segment[] segs = {s.cs(), s.ds(), s.es(), s.fs(), s.gs(), s.ss(), s.tr(), s.ldt()};
        for (int i = 0; i < SEGMENTS.length; i++) o.set(SEGMENTS[i], segment(segs[i]));
        o.set("gdt", table(s.gdt()));
        o.set("idt", table(s.idt()));
        o.put("cr0", hex(s.cr0()));
        o.put("cr2", hex(s.cr2()));
        o.put("cr3", hex(s.cr3()));
        o.put("cr4", hex(s.cr4()));
        o.put("cr8", hex(s.cr8()));
        o.put("efer", hex(s.efer()));
        o.put("apic_base", hex(s.apicBase()));
        return o;
    }

    private static ObjectNode segment(Segment g) {
        ObjectNode o = NODES.objectNode();
        o.put("base", hex(g.base()));
        o.put("limit", hex(g.limit() & 0xffffffffL));
        o.put("selector", g.selector());
        o.put("type", g.type());
        o.put("present", g.present());
        o.put("dpl", g.dpl());
        o.put("db", g.db());
        o.put("s", g.s());
        o.put("l", g.l());
        o.put("g", g.g());
        o.put("avl", g.avl());
        o.put("unusable", g.unusable());
        return o;
    }

    private static ObjectNode table(DescriptorTable t) {
        ObjectNode o = NODES.objectNode();
        o.put("base", hex(t.base()));
        o.put("limit", hex(t.limit()));
        return o;
    }

    static String hex(long v) {
        return "0x" + Long.toHexString(v);
    }

    // ---- reading ------------------------------------------------------------------------------

    /**
     * The JSON document in {@code json} as a tree, as {@code ObjectMapper.readTree} builds it (ints,
     * longs and big integers by size, doubles, the last of duplicate keys), but straight from
     * jackson-core's streaming parser: no ObjectMapper is made on a restore's path. Null for an empty
     * document.
     */
    static JsonNode readTree(byte[] json) throws IOException {
        try (JsonParser p = PARSERS.createParser(json)) {
            JsonToken first = p.nextToken();
            if (first == null) return null;
            JsonNode root = value(p, first);
            JsonToken after = p.nextToken();
            if (after != null) throw new JsonParseException(p, "unexpected " + after + " after the end of the document");
            return root;
        }
    }

    private static JsonNode value(JsonParser p, JsonToken t) throws IOException {
        return switch (t) {
            case START_OBJECT -> {
                ObjectNode o = NODES.objectNode();
                for (JsonToken k = p.nextToken(); k != JsonToken.END_OBJECT; k = p.nextToken()) {
                    String name = p.currentName();
                    o.set(name, value(p, p.nextToken()));
                }
                yield o;
            }
            case START_ARRAY -> {
                ArrayNode a = NODES.arrayNode();
                for (JsonToken e = p.nextToken(); e != JsonToken.END_ARRAY; e = p.nextToken()) a.add(value(p, e));
                yield a;
            }
            case VALUE_STRING -> NODES.textNode(p.getText());
            case VALUE_NUMBER_INT -> switch (p.getNumberType()) {
                case INT -> NODES.numberNode(p.getIntValue());
                case LONG -> NODES.numberNode(p.getLongValue());
                default -> NODES.numberNode(p.getBigIntegerValue());
            };
            case VALUE_NUMBER_FLOAT -> NODES.numberNode(p.getDoubleValue());
            case VALUE_TRUE -> NODES.booleanNode(true);
            case VALUE_FALSE -> NODES.booleanNode(false);
            case VALUE_NULL -> NODES.nullNode();
            default -> throw new JsonParseException(p, "unexpected " + t);
        };
    }

    /**
     * Parses a description. Checks shape and types only (every field present, of its type); what the
     * values must satisfy is {@link SnapshotValidator}'s job.
     * @throws SnapshotException naming {@code file} and the JSON path at fault
     */
    public static SnapshotDescription parse(String file, byte[] json) {
        JsonNode root;
        try {
            root = readTree(json);
        } catch (IOException e) {
            String m = e.getMessage() == null ? e.toString() : e.getMessage().lines().findFirst().orElse("");
            throw new SnapshotException(file + " is not valid JSON: " + m, e);
        }
        if (root == null || !root.isObject()) throw new SnapshotException(file + " does not hold a JSON object");
        Node r = new Node(file, "", root);
        String format = r.text("format");
        if (!format.equals(SnapshotFormat.FORMAT)) {
            throw new SnapshotException(file + ": format is '" + format + "', expected '" + SnapshotFormat.FORMAT + "'");
        }
        int version = r.integer("version");
        if (version != SnapshotFormat.VERSION) {
            throw new SnapshotException(file + ": format version " + version + " is not supported (this build reads version "
                    + SnapshotFormat.VERSION + (version == 1 ? "; version 1 kept the chunk checksums in the description: take the snapshot again" : "")
                    + ")");
        }
        long ram = r.number("ram_bytes");
        long page = r.number("page_bytes"), chunk = r.number("chunk_bytes");
        if (page != SnapshotFormat.PAGE) throw new SnapshotException(file + ": page_bytes is " + page + ", expected " + SnapshotFormat.PAGE);
        if (chunk != SnapshotFormat.CHUNK_BYTES) throw new SnapshotException(file + ": chunk_bytes is " + chunk + ", expected " + SnapshotFormat.CHUNK_BYTES);
        List<SnapshotDescription.Memslot> slots = new ArrayList<>();
        for (Node s : r.array("memslots")) {
            slots.add(new SnapshotDescription.Memslot(s.integer("slot"), s.hexNumber("gpa"), s.number("bytes"), s.integer("flags")));
        }
        Node p = r.object("point");
        String kind = p.text("kind");
        SnapshotDescription.Point point = switch (kind) {
            case "time" -> SnapshotDescription.Point.afterMillis(p.number("after_ms"));
            case "exit" -> SnapshotDescription.Point.atExit(p.integer("vcpu"), p.number("exit"));
            default -> throw p.fail("kind", "is '" + kind + "', expected 'time' or 'exit'");
        };
        SnapshotDescription.Guest guest = guest(r.object("guest"));
        List<VcpuState> vcpus = new ArrayList<>();
        List<Long> exits = new ArrayList<>();
        List<Node> vs = r.array("vcpus");
        for (int i = 0; i < vs.size(); i++) {
            Node v = vs.get(i);
            int index = v.integer("index");
            if (index != i) throw v.fail("index", "is " + index + ", expected " + i + " (vCPUs are listed in order)");
            exits.add(v.number("guest_exits"));
            vcpus.add(new VcpuState(regs(v.object("regs")), sregs(v.object("sregs"))));
        }
        Node m = r.object("memory");
        SnapshotDescription.MemoryFile mem = new SnapshotDescription.MemoryFile(m.text("file"), m.number("bytes"),
                m.number("stored_pages"), m.number("zero_pages"), m.text("ram_sha256"));
        SnapshotDescription.IndexFile map = indexFile(r.object("page_map"));
        SnapshotDescription.IndexFile chunkTable = indexFile(r.object("chunk_table"));
        SnapshotDescription.OriginalRun orig = null;
        if (r.has("original_run")) {
            Node o = r.object("original_run");
            List<SnapshotDescription.VcpuEnd> ends = new ArrayList<>();
            for (Node e : o.array("vcpus")) {
                List<Long> reps = new ArrayList<>();
                List<Node> rs = e.array("reports");
                for (int i = 0; i < rs.size(); i++) reps.add(e.hexAt("reports", i));
                ends.add(new SnapshotDescription.VcpuEnd(e.integer("index"), e.text("outcome"), e.number("done_code"), reps));
            }
            orig = new SnapshotDescription.OriginalRun(o.text("ram_sha256"), ends);
        }
        return new SnapshotDescription(version, r.text("backend"), r.text("created"), ram, slots, point, guest, vcpus, exits,
                mem, map, chunkTable, orig);
    }

    private static SnapshotDescription.IndexFile indexFile(Node n) {
        return new SnapshotDescription.IndexFile(n.text("file"), n.number("bytes"), n.text("sha256"));
    }

    private static SnapshotDescription.Guest guest(Node g) {
        if (g.has("workload")) {
            Node p = g.object("params");
            WorkloadParams params = new WorkloadParams(p.number("mem_bytes"), p.integer("vcpus"), p.number("seed"),
                    p.integer("stride"), p.integer("rounds"), p.integer("working_set_pages"), p.integer("phases"));
            return SnapshotDescription.Guest.workload(g.text("workload"), params);
        }
        if (g.has("image")) {
            return SnapshotDescription.Guest.image(g.text("image"), g.text("image_sha256"), g.hexNumber("load_gpa"), g.hexNumber("entry"));
        }
        throw g.fail("", "names neither a workload nor an image");
    }

    private static Regs regs(Node n) {
        Regs r = new Regs();
        for (int i = 0; i < Regs.NAMES.length; i++) r.gpr[i] = n.hexNumber(Regs.NAMES[i]);
        r.rip = n.hexNumber("rip");
        r.rflags = n.hexNumber("rflags");
        return r;
    }

    private static Sregs sregs(Node n) {
        Segment[] s = new Segment[SEGMENTS.length];
        for (int i = 0; i < SEGMENTS.length; i++) {
            Node g = n.object(SEGMENTS[i]);
            long limit = g.hexNumber("limit");
            if (limit >>> 32 != 0) throw g.fail("limit", "is 0x" + Long.toHexString(limit) + ", wider than 32 bits");
            s[i] = new Segment(g.hexNumber("base"), (int) limit, g.integer("selector"), g.integer("type"), g.bool("present"),
                    g.integer("dpl"), g.bool("db"), g.bool("s"), g.bool("l"), g.bool("g"), g.bool("avl"), g.bool("unusable"));
        }
        return new Sregs(s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7], table(n.object("gdt")), table(n.object("idt")),
                n.hexNumber("cr0"), n.hexNumber("cr2"), n.hexNumber("cr3"), n.hexNumber("cr4"), n.hexNumber("cr8"),
                n.hexNumber("efer"), n.hexNumber("apic_base"));
    }

    private static DescriptorTable table(Node n) {
        long limit = n.hexNumber("limit");
        if (limit > 0xffff) throw n.fail("limit", "is 0x" + Long.toHexString(limit) + ", wider than 16 bits");
        return new DescriptorTable(n.hexNumber("base"), (int) limit);
    }

    /** A JSON object with its path, for messages. */
    private record Node(String file, String path, JsonNode node) {
        SnapshotException fail(String field, String what) {
            String at = field.isEmpty() ? path : path.isEmpty() ? field : path + "." + field;
            return new SnapshotException(file + ": " + (at.isEmpty() ? "the top level" : at) + " " + what);
        }

        boolean has(String f) { return node.has(f) && !node.get(f).isNull(); }

        private JsonNode get(String f) {
            JsonNode v = node.get(f);
            if (v == null || v.isNull()) throw fail(f, "is missing");
            return v;
        }

        String text(String f) {
            JsonNode v = get(f);
            if (!v.isTextual()) throw fail(f, "should be a string, found " + v.getNodeType().name().toLowerCase());
            return v.asText();
        }

        long number(String f) {
            JsonNode v = get(f);
            if (!v.isIntegralNumber() || !v.canConvertToLong()) throw fail(f, "should be an integer, found " + v);
            return v.asLong();
        }

        int integer(String f) {
            long v = number(f);
            if (v != (int) v) throw fail(f, "is " + v + ", out of range");
            return (int) v;
        }

        boolean bool(String f) {
            JsonNode v = get(f);
            if (!v.isBoolean()) throw fail(f, "should be true or false, found " + v);
            return v.asBoolean();
        }

        long hexNumber(String f) {
            return parseHex(f, get(f));
        }

        long hexAt(String f, int i) {
            return parseHex(f + "[" + i + "]", get(f).get(i));
        }

        private long parseHex(String f, JsonNode v) {
            if (!v.isTextual() || !v.asText().startsWith("0x")) throw fail(f, "should be a \"0x...\" hex string, found " + v);
            try {
                return Long.parseUnsignedLong(v.asText().substring(2), 16);
            } catch (NumberFormatException e) {
                throw fail(f, "is not a 64-bit hex number: " + v);
            }
        }

        Node object(String f) {
            JsonNode v = get(f);
            if (!v.isObject()) throw fail(f, "should be an object");
            return new Node(file, path.isEmpty() ? f : path + "." + f, v);
        }

        List<Node> array(String f) {
            JsonNode v = get(f);
            if (!v.isArray()) throw fail(f, "should be an array");
            List<Node> out = new ArrayList<>();
            for (int i = 0; i < v.size(); i++) {
                String p = (path.isEmpty() ? f : path + "." + f) + "[" + i + "]";
                if (!v.get(i).isObject() && !v.get(i).isTextual()) throw new SnapshotException(file + ": " + p + " has the wrong type");
                out.add(new Node(file, p, v.get(i)));
            }
            return out;
        }
    }
}
