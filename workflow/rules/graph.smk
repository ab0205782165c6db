# Stage 2, graph recommenders (Table 8): the training graph and the kNN item graphs, built once
# per dataset and read by every graph recommender run.


rule build_graph:
    """Training pairs (the sequential models' training windows), their normalised user-item
    adjacency and one kNN item graph per declared modality from the cached states of one kept layer."""
    input:
        train="results/{dataset}/data/train.parquet",
        valid="results/{dataset}/data/valid.parquet",
        test="results/{dataset}/data/test.parquet",
        item_table=item_table,
        features=lambda wc: expand(
            "{features}/{modality}.h5", features=folder(wc.dataset, "features"), modality=feature_modalities(wc.dataset)
        ),
        settings=suffix("graph"),
    output:
        "results/{dataset}/graph{graph_x}/graph.h5",
    params:
        data=lambda wc: f"results/{wc.dataset}/data",
        features=lambda wc: folder(wc.dataset, "features"),
        modalities=lambda wc: dataset_letters(config, wc.dataset),  # the declared ones: TIVA, T, ...
        # layer, k, max_len and z-scoring as flags: changing one rebuilds the graph
        flags=lambda wc: graph_build_flags(training_settings(config, wc.dataset)),
    log:
        "results/{dataset}/logs/graph{graph_x}/build_graph.log",
    benchmark:
        "results/{dataset}/benchmarks/graph{graph_x}/build_graph.tsv"
    threads: 1
    # MicroLens-100K: 19,738 items x 4 modalities x 768-d states (7 layers read, 0.9 GB as
    # float32) and 2,048 x 19,738 similarities per block; seconds of compute.
    resources:
        mem_mb=by_dataset(2000, 8000),
        runtime=60,
    conda:
        "../../envs/models.yaml"
    shell:
        "crossan graph --data {params.data} --features {params.features} --out {output}"
        " --modalities {params.modalities} {params.flags} > {log} 2>&1"
