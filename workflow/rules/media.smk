# Stage 1a, media: 16 frames and 3 s of audio per video, and the cover, into HDF5.


rule sample_media:
    """Sample one modality for every item; resumable, masked on bad input."""
    input:
        manifest="resources/{dataset}/dataset.json",
        item_ids="results/{dataset}/data/item_ids.csv",
        raw=media_part,
        settings=suffix("media"),
    output:
        "results/{dataset}/media{media_x}/{modality}.h5",
    wildcard_constraints:
        modality=r"video|audio|image",
    params:
        frames=media_setting("frames"),
        seconds=media_setting("seconds"),
        sample_rate=media_setting("sample_rate"),
        video_size=media_setting("video_size"),
        image_size=media_setting("image_size"),
        chunk_items=media_setting("chunk_items"),
        jpeg_quality=media_setting("jpeg_quality"),
    log:
        "results/{dataset}/logs/sample_media{media_x}_{modality}.log",
    benchmark:
        "results/{dataset}/benchmarks/sample_media{media_x}_{modality}.tsv"
    threads: lambda wc: dataset_media(config, wc.dataset)["workers"]
    resources:
        mem_mb=4000,
        runtime=12 * 60,
    conda:
        "../../envs/data.yaml"
    shell:
        "crossan --progress-fd 3 sample-media --dataset-json {input.manifest} --items {input.item_ids}"
        " --out results/{wildcards.dataset}/media{wildcards.media_x} --modalities {wildcards.modality}"
        " --frames {params.frames} --seconds {params.seconds} --sample-rate {params.sample_rate}"
        " --video-size {params.video_size} --image-size {params.image_size}"
        " --chunk-items {params.chunk_items} --jpeg-quality {params.jpeg_quality}"
        " --workers {threads} 3>&2 > {log} 2>&1"
