"""The paper's published numbers, shown beside ours for the MicroLens datasets.

Transcribed from ``crossan-paper.txt`` (Tables 1 and 3-8). Keys: target, paper dataset
(``microlens-100k``/``microlens-50k``), row label (the labels of :mod:`crossan.results.plan`),
column. Table 1 and Table 4 are reported on MicroLens-100K only. Relative improvements are
in percent, as printed.
"""

from __future__ import annotations

from typing import Any

COLUMNS: tuple[str, ...] = ("HR@10", "NDCG@10", "HR@20", "NDCG@20")


def _rows(values: dict[str, tuple[float, ...]], columns: tuple[str, ...] = COLUMNS) -> dict[str, dict[str, float]]:
    return {label: dict(zip(columns, row)) for label, row in values.items()}


_TABLE3_100K = {
    "Full Finetuning (T+I)": (0.0934, 0.0499, 0.1363, 0.0607),
    "Adapter (T+I)": (0.0962, 0.0514, 0.1376, 0.0618),
    "LoRA (T+I)": (0.0866, 0.0462, 0.1298, 0.0571),
    "IISAN (T+I)": (0.0960, 0.0526, 0.1366, 0.0628),
    "IISAN-E (T+I+A)": (0.0953, 0.0523, 0.1353, 0.0623),
    "IISAN-E (T+I+V)": (0.0939, 0.0517, 0.1341, 0.0619),
    "IISAN-E (T+I+V+A)": (0.0949, 0.0524, 0.1350, 0.0625),
    "CROSSAN (T+I) (ours)": (0.0999, 0.0553, 0.1428, 0.0661),
    "CROSSAN (T+I+A) (ours)": (0.1012, 0.0557, 0.1445, 0.0666),
    "CROSSAN (T+I+V) (ours)": (0.1006, 0.0557, 0.1428, 0.0663),
    "CROSSAN (T+I+V+A) (ours)": (0.1033, 0.0568, 0.1452, 0.0673),
    "Text+Image": (3.86, 4.99, 4.43, 5.03),
    "Text+Image+Audio": (5.87, 6.17, 6.39, 6.43),
    "Text+Image+Video": (6.70, 7.18, 6.04, 6.74),
    "Text+Image+Video+Audio": (8.10, 7.70, 7.00, 7.15),
}
_TABLE3_50K = {
    "Full Finetuning (T+I)": (0.0772, 0.0408, 0.1129, 0.0498),
    "Adapter (T+I)": (0.0765, 0.0407, 0.1132, 0.0500),
    "LoRA (T+I)": (0.0644, 0.0331, 0.0975, 0.0415),
    "IISAN (T+I)": (0.0771, 0.0421, 0.1121, 0.0509),
    "IISAN-E (T+I+A)": (0.0777, 0.0422, 0.1137, 0.0513),
    "IISAN-E (T+I+V)": (0.0775, 0.0428, 0.1150, 0.0522),
    "IISAN-E (T+I+V+A)": (0.0790, 0.0430, 0.1135, 0.0517),
    "CROSSAN (T+I) (ours)": (0.0806, 0.0431, 0.1177, 0.0524),
    "CROSSAN (T+I+A) (ours)": (0.0811, 0.0444, 0.1188, 0.0539),
    "CROSSAN (T+I+V) (ours)": (0.0808, 0.0437, 0.1183, 0.0531),
    "CROSSAN (T+I+V+A) (ours)": (0.0847, 0.0462, 0.1222, 0.0557),
    "Text+Image": (4.25, 2.24, 4.81, 2.99),
    "Text+Image+Audio": (4.17, 4.95, 4.34, 4.88),
    "Text+Image+Video": (4.06, 2.04, 2.74, 1.75),
    "Text+Image+Video+Audio": (6.73, 6.97, 7.13, 7.21),
}

TABLE8_COLUMNS: tuple[str, ...] = ("HR@10", "HR@20", "NDCG@10", "NDCG@20")  # Table 8's order
_TABLE8_100K = {
    "MMGCN": (0.0405, 0.0678, 0.0202, 0.0271),
    "GRCN": (0.0682, 0.1057, 0.0353, 0.0448),
    "BM3": (0.0601, 0.0975, 0.0305, 0.0401),
    "FREEDOM": (0.0654, 0.1016, 0.0337, 0.0431),
    "MGCN": (0.0717, 0.1096, 0.0371, 0.0467),
    "MHCR": (0.0798, 0.1187, 0.0420, 0.0519),
    "IISAN (T+I)": (0.0960, 0.1366, 0.0526, 0.0628),
    "CROSSAN (T+I+V+A) (ours)": (0.1033, 0.1452, 0.0568, 0.0673),
}
_TABLE8_50K = {
    "MMGCN": (0.0403, 0.0670, 0.0197, 0.0264),
    "GRCN": (0.0631, 0.0982, 0.0328, 0.0415),
    "BM3": (0.0565, 0.0918, 0.0281, 0.0372),
    "FREEDOM": (0.0656, 0.1028, 0.0334, 0.0429),
    "MGCN": (0.0708, 0.1089, 0.0363, 0.0459),
    "MHCR": (0.0736, 0.1102, 0.0383, 0.0477),
    "IISAN (T+I)": (0.0771, 0.1121, 0.0421, 0.0509),
    "CROSSAN (T+I+V+A) (ours)": (0.0847, 0.1222, 0.0462, 0.0557),
}

PAPER: dict[str, dict[str, dict[str, dict[str, Any]]]] = {
    # Table 1 is transposed in the paper: rows are metrics, columns the two methods.
    "table1": {
        "microlens-100k": {
            "HR@10": {"INDSAN": 0.0957, "CROSSAN": 0.0970},
            "HR@20": {"INDSAN": 0.1373, "CROSSAN": 0.1393},
            "NDCG@10": {"INDSAN": 0.0521, "CROSSAN": 0.0537},
            "NDCG@20": {"INDSAN": 0.0626, "CROSSAN": 0.0644},
            "Mutual Information": {"INDSAN": 0.0129, "CROSSAN": 0.2001},
        },
    },
    "table3": {"microlens-100k": _rows(_TABLE3_100K), "microlens-50k": _rows(_TABLE3_50K)},
    "table4": {
        "microlens-100k": _rows({
            "Full Finetuning (T+I)": (3278, 45886, 194897216),
            "Adapter (T+I)": (2856, 35652, 38017088),
            "LoRA (T+I)": (3110, 36902, 37992512),
            "IISAN-E_best (T+I+V+A)": (213, 5556, 58432824),
            "IISAN-E_same (T+I+V+A)": (207, 4476, 30889784),
            "CROSSAN (T+I+V+A) (ours)": (144, 4272, 24741456),
            "Improvement_best": (32.39, 23.11, 57.66),
            "Improvement_same": (30.43, 4.56, 19.90),
        }, ("TT", "GM", "TP")),
    },
    "table5": {
        "microlens-100k": _rows({
            "MOMEF": (0.1033, 0.0568, 0.1452, 0.0673),
            "D-Gated Fusion": (0.0994, 0.0551, 0.1416, 0.0657),
            "S-Gated Fusion": (0.0972, 0.0532, 0.1394, 0.0638),
            "Concat Fusion": (0.0965, 0.0531, 0.1380, 0.0636),
        }),
        "microlens-50k": _rows({
            "MOMEF": (0.0847, 0.0462, 0.1224, 0.0557),
            "D-Gated Fusion": (0.0796, 0.0430, 0.1196, 0.0530),
            "S-Gated Fusion": (0.0807, 0.0437, 0.1171, 0.0529),
            "Concat Fusion": (0.0816, 0.0442, 0.1181, 0.0534),
        }),
    },
    "table6": {
        "microlens-100k": _rows({
            "Cross-modal": (0.1033, 0.0568, 0.1452, 0.0673),
            "Independent": (0.0993, 0.0546, 0.1418, 0.0654),
        }),
        "microlens-50k": _rows({
            "Cross-modal": (0.0847, 0.0462, 0.1224, 0.0557),
            "Independent": (0.0815, 0.0439, 0.1169, 0.0528),
        }),
    },
    "table7": {
        "microlens-100k": _rows({
            "4": (0.0992, 0.0545, 0.1422, 0.0653),
            "3": (0.1002, 0.0558, 0.1459, 0.0673),
            "2": (0.1033, 0.0568, 0.1452, 0.0673),
            "1": (0.1014, 0.0560, 0.1444, 0.0668),
        }),
        "microlens-50k": _rows({
            "4": (0.0821, 0.0444, 0.1189, 0.0536),
            "3": (0.0847, 0.0462, 0.1224, 0.0557),
            "2": (0.0815, 0.0438, 0.1197, 0.0534),
            "1": (0.0822, 0.0451, 0.1178, 0.0541),
        }),
    },
    "table8": {"microlens-100k": _rows(_TABLE8_100K, TABLE8_COLUMNS),
               "microlens-50k": _rows(_TABLE8_50K, TABLE8_COLUMNS)},
}


def paper_value(target: str, paper_dataset: str, row: str, column: str) -> float | None:
    """The published value of one cell, or ``None`` when the paper has none."""
    return PAPER.get(target, {}).get(paper_dataset, {}).get(row, {}).get(column)
