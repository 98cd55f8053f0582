test_that("RunMMAAVI on a Seurat mosaic adds a global DimReduc in the object's cell order", {
  skip_without_python()
  seu <- bmmc_fit("seurat")
  dr <- seu[["mmaavi"]]
  expect_s4_class(dr, "DimReduc")
  expect_identical(rownames(SeuratObject::Embeddings(dr)), colnames(seu))
  expect_identical(SeuratObject::Key(dr), "MMAAVI_")
  expect_identical(colnames(SeuratObject::Embeddings(dr)), paste0("MMAAVI_", 1:30))
  expect_true(SeuratObject::IsGlobal(dr))
  misc <- SeuratObject::Misc(dr)
  expect_true(dir.exists(misc$model.dir))
  expect_setequal(list.files(misc$model.dir), c("data.h5mu", "model"))
  expect_identical(misc$versions$mmaavi.python, as.character(packageVersion("mmaavi")))
  expect_identical(misc$train$n_epochs, 2L)
  expect_identical(names(seu@commands), "RunMMAAVI")
  expect_identical(seu@commands$RunMMAAVI@params$batch, "batch")
})

test_that("attention in meta.data is zero exactly where a modality was not measured", {
  skip_without_python()
  seu <- bmmc_fit("seurat")
  md <- seu[[]]
  cite <- md$assay == "cite"
  expect_true(all(md$mmaavi_attention_adt[!cite] == 0))
  expect_true(all(md$mmaavi_attention_atac[cite] == 0))
  expect_true(all(md$mmaavi_attention_adt[cite] > 0))
  expect_true(all(md$mmaavi_attention_atac[!cite] > 0))
  total <- md$mmaavi_attention_rna + md$mmaavi_attention_adt + md$mmaavi_attention_atac
  expect_equal(total, rep(1, nrow(md)), tolerance = 1e-5)
})

test_that("shuffling the cells of the input changes neither the order rule nor the embedding", {
  skip_without_python()
  seu <- bmmc_fit("seurat")
  shuffled <- suppressMessages(RunMMAAVI(bmmc_seurat(shuffle_seed = 1),
    batch = "batch", n.components = 10, max_epochs = 2, verbose = FALSE
  ))
  z <- SeuratObject::Embeddings(shuffled, "mmaavi")
  expect_identical(rownames(z), colnames(shuffled))
  expect_false(identical(colnames(shuffled), colnames(seu)))
  expect_identical(z[colnames(seu), ], SeuratObject::Embeddings(seu, "mmaavi"))
  expect_identical(
    shuffled$mmaavi_attention_adt[colnames(seu)],
    seu$mmaavi_attention_adt
  )
})

test_that("the embedding from R equals the Python core's for the same matrices and seed", {
  skip_without_python()
  seu <- bmmc_fit("seurat")
  m <- bmmc_matrices()
  ad <- reticulate::import("anndata")
  pd <- reticulate::import("pandas", convert = FALSE) # no data.frame round trip (FutureWarning noise)
  mmaavi_py <- reticulate::import("mmaavi")
  torch <- reticulate::import("torch")
  # What RunMMAAVI documents: per modality the cells with a count, one block per batch (sorted)
  # with the features counted in that batch, cells by name.
  blocks <- function(x) {
    cells <- colnames(x)[Matrix::colSums(x) > 0]
    by_batch <- split(cells, m$cells[cells, "batch"])
    lapply(unname(by_batch), function(b) {
      b <- sort(b, method = "radix")
      block <- x[Matrix::rowSums(x[, b]) > 0, b]
      ad$AnnData(
        X = Matrix::t(block),
        obs = pd$DataFrame(list(batch = m$cells[b, "batch"]), index = b),
        var = pd$DataFrame(index = rownames(block))
      )
    })
  }
  mdata <- mmaavi_py$data$mosaic(
    list(rna = blocks(m$rna), adt = blocks(m$adt), atac = blocks(m$atac)),
    batch_key = "batch"
  )
  threads <- torch$get_num_threads()
  torch$set_num_threads(1L)
  on.exit(torch$set_num_threads(threads), add = TRUE)
  model <- mmaavi_py$MMAAVI(mdata, batch_key = "batch", n_components = 10L)
  model$train(max_epochs = 2L, seed = 0L, progress = "none")
  z_py <- model$get_latent_representation()
  rownames(z_py) <- unlist(mdata$obs_names$tolist())
  z_r <- SeuratObject::Embeddings(seu, "mmaavi")
  expect_identical(unname(z_r), unname(z_py[colnames(seu), ]))
})

test_that("observed = logical columns gives the same model as the all-zero rule, silently", {
  skip_without_python()
  seu <- bmmc_seurat()
  seu$has_adt <- seu$assay == "cite"
  seu$has_atac <- seu$assay == "multiome"
  expect_silent(out <- RunMMAAVI(seu,
    batch = "batch", n.components = 10, max_epochs = 2, verbose = FALSE,
    observed = list(adt = "has_adt", atac = colnames(seu)[seu$has_atac])
  ))
  expect_identical(
    SeuratObject::Embeddings(out, "mmaavi"),
    SeuratObject::Embeddings(bmmc_fit("seurat"), "mmaavi")
  )
})

test_that("all-zero cells and features count as unmeasured, with messages giving the numbers", {
  skip_without_python()
  messages <- character()
  withCallingHandlers(
    RunMMAAVI(bmmc_seurat(), batch = "batch", n.components = 3, max_epochs = 1),
    message = function(m) {
      messages <<- c(messages, conditionMessage(m))
      invokeRestart("muffleMessage")
    }
  )
  expect_match(messages, "all-zero column count as not measured: adt 500 of 1100 cells, atac 600 of 1100 cells", all = FALSE)
  # the CITE panel lacks the 966 Multiome-only genes (and a few of its own are all zero)
  expect_match(messages, "rna features without a count in any cell of a batch count as not measured there: 967 of 1966 in 'cite_s1d1', 968 of 1966 in 'cite_s1d2', 836 of 1966 in 'multiome_s1d1', 834 of 1966 in 'multiome_s1d2'", all = FALSE)
})

test_that("batch.features = 'all' keeps every feature in every batch and trains another model", {
  skip_without_python()
  out <- RunMMAAVI(bmmc_seurat(),
    batch = "batch", n.components = 10, max_epochs = 2, verbose = FALSE,
    batch.features = "all"
  )
  z <- SeuratObject::Embeddings(out, "mmaavi")
  expect_identical(rownames(z), colnames(out))
  expect_false(isTRUE(all.equal(z, SeuratObject::Embeddings(bmmc_fit("seurat"), "mmaavi"))))
})

test_that("labels train semi-supervised and transfer to unlabelled cells", {
  skip_without_python()
  seu <- bmmc_seurat()
  seu$cite_labels <- ifelse(seu$assay == "cite", seu$cell_type_l1, NA)
  seu <- RunMMAAVI(seu,
    batch = "batch", labels = "cite_labels", max_epochs = 2, verbose = FALSE,
    reduction.name = "semi", reduction.key = "SEMI_"
  )
  expect_s3_class(seu$semi_label, "factor")
  expect_setequal(levels(seu$semi_label), unique(seu$cell_type_l1[seu$assay == "cite"]))
  expect_false(anyNA(seu$semi_label))
  expect_true(all(seu$semi_label_probability > 0 & seu$semi_label_probability <= 1))
  expect_identical(colnames(SeuratObject::Embeddings(seu, "semi"))[1], "SEMI_1")
})

test_that("a model saved by RunMMAAVI loads back with the same per-cell results", {
  skip_without_python()
  seu <- bmmc_fit("seurat")
  model <- LoadMMAAVI(SeuratObject::Misc(seu[["mmaavi"]])$model.dir)
  expect_s3_class(model, "MMAAVIModel")
  expect_setequal(model$cells, colnames(seu))
  expect_identical(model$modalities, c("rna", "adt", "atac"))
  expect_identical(model$embedding[colnames(seu), ], SeuratObject::Embeddings(seu, "mmaavi"))
  expect_identical(rownames(model$obs), model$cells)
  expect_output(print(model), "1100 cells, 4 batches; modalities: rna \\(1965 features\\), adt \\(134 features\\), atac \\(595 features\\)")
  expect_error(LoadMMAAVI(tempfile()), "no longer exists")
})

test_that("Bayes factors are a data.frame with the documented columns; B-cell markers rank high", {
  skip_without_python()
  seu <- bmmc_fit("seurat", max_epochs = 30L)
  bf <- MMAAVIBayesFactors(seu, group.by = "cell_type_l1", ident.1 = "B", n_samples = 2000)
  expect_s3_class(bf, "data.frame")
  expect_identical(colnames(bf), c(
    "feature", "modality", "proba_de", "proba_not_de", "bayes_factor", "scale1", "scale2",
    "lfc_mean", "lfc_median", "lfc_std", "lfc_min", "lfc_max", "raw_mean1", "raw_mean2",
    "non_zeros_proportion1", "non_zeros_proportion2", "is_de_fdr_0.05", "comparison",
    "group1", "group2"
  ))
  # features with a count somewhere (1 gene and 5 peaks have none in this subset)
  expect_identical(nrow(bf), 1965L + 134L + 595L)
  expect_identical(unique(bf$comparison), "B vs rest")
  top <- function(mod, n) {
    up <- bf[bf$modality == mod & bf$lfc_mean > 0, ]
    head(up$feature, n)
  }
  expect_gte(length(intersect(top("rna", 20), c("MS4A1", "IGHM", "BANK1", "CD79A", "CD79B", "PAX5", "CD22"))), 2)
  expect_true(all(c("CD19", "CD20") %in% top("adt", 10)))
  expect_true(all(bf$bayes_factor[bf$modality == "adt" & bf$feature %in% c("CD19", "CD20")] > 3))
})

test_that("imputed protein is higher in B than in T cells of the Multiome batches (never measured)", {
  skip_without_python()
  seu <- bmmc_fit("seurat", max_epochs = 30L)
  adt <- MMAAVIImpute(seu, "adt")
  expect_identical(dim(adt), c(134L, 1100L))
  expect_identical(colnames(adt), colnames(seu))
  multiome <- seu$assay == "multiome"
  b <- multiome & seu$cell_type_l1 == "B"
  t_cells <- multiome & seu$cell_type_l1 %in% c("CD4+ T", "CD8+ T")
  expect_gt(mean(adt["CD19", b]), 2 * mean(adt["CD19", t_cells]))
  expect_gt(mean(adt["CD3", t_cells]), 2 * mean(adt["CD3", b]))
  with_assay <- MMAAVIImpute(seu, "adt", new.assay = "ADTimputed")
  expect_true("ADTimputed" %in% SeuratObject::Assays(with_assay))
  expect_error(MMAAVIImpute(with_assay, "adt", new.assay = "ADTimputed"), "already exists")
  expect_error(MMAAVIImpute(seu, "protein"), "KeyError: Unknown modality 'protein'")
})
