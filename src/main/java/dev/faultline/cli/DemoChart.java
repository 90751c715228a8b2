package dev.faultline.cli;

import java.awt.Color;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import org.knowm.xchart.BitmapEncoder;
import org.knowm.xchart.CategoryChart;
import org.knowm.xchart.CategoryChartBuilder;
import org.knowm.xchart.VectorGraphicsEncoder;
import org.knowm.xchart.XYChart;
import org.knowm.xchart.XYChartBuilder;
import org.knowm.xchart.XYSeries;
import org.knowm.xchart.internal.chartpart.Chart;
import org.knowm.xchart.style.markers.SeriesMarkers;

/** The demo's chart: remote-fault latency over time since the switch-over, and as a histogram. */
final class DemoChart {
    private DemoChart() {}

    /** Writes {@code dir}/fault-latency.png (both charts) and one SVG per chart; returns the files written. */
    static List<Path> write(Path dir, Map<String, Object> destination, String title) throws IOException {
        System.setProperty("java.awt.headless", "true");
        Files.createDirectories(dir);
        Map<String, Object> samples = SourceSide.map(destination.get("fault_samples"));
        List<?> t = (List<?>) samples.getOrDefault("t_ms", List.of()), l = (List<?>) samples.getOrDefault("latency_us", List.of());
        List<?> conn = (List<?>) samples.getOrDefault("connection", List.of());
        XYChart over = new XYChartBuilder().width(900).height(420).title("Remote-fault latency over time (" + title + ")")
                .xAxisTitle("ms since the switch-over").yAxisTitle("latency (us, log)").build();
        over.getStyler().setDefaultSeriesRenderStyle(XYSeries.XYSeriesRenderStyle.Scatter);
        over.getStyler().setYAxisLogarithmic(true);
        over.getStyler().setMarkerSize(4);
        over.getStyler().setChartBackgroundColor(Color.WHITE);
        int lanes = conn.stream().mapToInt(o -> ((Number) o).intValue()).max().orElse(-1) + 1;
        for (int lane = 0; lane < Math.max(lanes, 1); lane++) {
            List<Double> xs = new ArrayList<>(), ys = new ArrayList<>();
            for (int i = 0; i < t.size(); i++) {
                if (lanes > 0 && ((Number) conn.get(i)).intValue() != lane) continue;
                xs.add(((Number) t.get(i)).doubleValue());
                ys.add(Math.max(0.1, ((Number) l.get(i)).doubleValue()));
            }
            if (xs.isEmpty()) {
                xs.add(0.0);
                ys.add(0.1);
            }
            over.addSeries("urgent connection " + lane, xs, ys).setMarker(SeriesMarkers.CIRCLE);
        }
        Map<String, Object> hist = SourceSide.map(destination.get("fault_histogram"));
        List<?> upper = (List<?>) hist.getOrDefault("upper_us", List.of()), count = (List<?>) hist.getOrDefault("count", List.of());
        CategoryChart h = new CategoryChartBuilder().width(900).height(420).title("Remote-fault latency histogram (all vCPUs)")
                .xAxisTitle("latency up to (us)").yAxisTitle("faults").build();
        h.getStyler().setLegendVisible(false);
        h.getStyler().setChartBackgroundColor(Color.WHITE);
        h.getStyler().setXAxisLabelRotation(45);
        List<String> xs = new ArrayList<>();
        List<Number> ys = new ArrayList<>();
        for (int i = 0; i < upper.size(); i++) {
            double u = ((Number) upper.get(i)).doubleValue();
            xs.add(String.format(u < 10 ? "%.1f" : "%.0f", u)); // buckets grow by 1.5x: below 10 µs whole numbers repeat
            ys.add((Number) count.get(i));
        }
        if (xs.isEmpty()) {
            xs.add("none");
            ys.add(0);
        }
        h.addSeries("faults", xs, ys);
        Path png = dir.resolve("fault-latency.png");
        List<Chart<?, ?>> both = List.of(over, h);
        BitmapEncoder.saveBitmap(both, 2, 1, png.toString(), BitmapEncoder.BitmapFormat.PNG);
        List<Path> out = new ArrayList<>(List.of(png));
        Path svg1 = dir.resolve("fault-latency-over-time.svg"), svg2 = dir.resolve("fault-latency-histogram.svg");
        VectorGraphicsEncoder.saveVectorGraphic(over, svg1.toString(), VectorGraphicsEncoder.VectorGraphicsFormat.SVG);
        VectorGraphicsEncoder.saveVectorGraphic(h, svg2.toString(), VectorGraphicsEncoder.VectorGraphicsFormat.SVG);
        out.add(svg1);
        out.add(svg2);
        return out;
    }
}
